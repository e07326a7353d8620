"""`--served-model-name`, `--chat-template`, `--embedding` and `--enable-anthropic-api`: refused
where they mean nothing (one error line, exit 2), and honoured by a real `dynamo-run` server."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from dynamo.frontend.cli import main
from dynamo.frontend.flags import UsageError
from dynamo.frontend.local_model import read_chat_template

TEMPLATE = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["in=stdin", "out=echo_full", "--enable-anthropic-api"], "needs in=http"),
        (["in=stdin", "out=echo_full", "--embedding"], "needs in=http or in=dyn://"),
        (
            ["in=http", "out=dyn", "--chat-template", "t.jinja"],
            "--chat-template is a flag of the engine",
        ),
        (["in=http", "out=dyn", "--embedding"], "--embedding is a flag of the engine"),
        (
            ["in=http", "out=echo_full", "--model-name", "a", "--served-model-name", "b"],
            "give the name once",
        ),
        (
            ["in=stdin", "out=echo_full", "--served-model-name", "a", "b"],
            "several --served-model-name",
        ),
        (["in=http", "out=echo_full", "--embedding"], "out=echo_full cannot serve embeddings"),
    ],
)
def test_refused(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1


def test_chat_template_file_is_checked(tmp_path, capsys):
    with pytest.raises(UsageError, match="cannot read"):
        read_chat_template(str(tmp_path / "missing.jinja"))
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}")
    with pytest.raises(UsageError, match="does not compile"):
        read_chat_template(str(bad))
    good = tmp_path / "good.jinja"
    good.write_text(TEMPLATE)
    assert read_chat_template(str(good)) == TEMPLATE
    # An engine that templates its own prompts has no use for one.
    assert main(["in=http", "out=echo_full", "--chat-template", str(good)]) == 2
    assert "renders its own prompts" in capsys.readouterr().err


def test_server_with_template_aliases_and_anthropic(start_server, smollm2_gguf, tmp_path):
    template = tmp_path / "plain.jinja"
    template.write_text(TEMPLATE)
    server = start_server(
        "out=echo_core",
        str(smollm2_gguf),
        "--chat-template",
        str(template),
        "--served-model-name",
        "smol",
        "smol-alias",
        "--enable-anthropic-api",
    )
    rows = httpx.get(f"{server.v1}/models").json()["data"]
    assert {(row["id"], row["root"]) for row in rows} == {("smol", "smol"), ("smol-alias", "smol")}
    client = openai.OpenAI(base_url=server.v1, api_key="none", max_retries=0)
    chat = client.chat.completions.create(
        model="smol-alias", messages=[{"role": "user", "content": "hi"}]
    )
    assert chat.choices[0].message.content == "[user] hi\n"  # echo_core: the prompt as templated
    assert chat.model == "smol"
    response = client.responses.create(model="smol-alias", input="hi", instructions="sys")
    assert response.output_text == "[system] sys\n[user] hi\n"
    with client.responses.stream(model="smol", input="yo") as stream:
        assert stream.get_final_response().output_text == "[user] yo\n"
    claude = anthropic.Anthropic(base_url=server.url, api_key="none", max_retries=0)
    message = claude.messages.create(
        model="smol", max_tokens=50, system="sys", messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == "[system] sys\n[user] hi\n"
    with claude.messages.stream(
        model="smol", max_tokens=3, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 3
    assert (
        claude.messages.count_tokens(
            model="smol", messages=[{"role": "user", "content": "hi"}]
        ).input_tokens
        > 0
    )
