"""Responses, Anthropic Messages and embeddings through `out=dyn`: workers and the frontend as
separate processes over real etcd and NATS, the same chat and embedding pipelines as in process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import anthropic
import httpx
import openai
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def workers(runtime_env):
    procs: list[subprocess.Popen] = []
    env = {**os.environ, "DYN_TOKEN_ECHO_DELAY_MS": "0", **runtime_env}

    def spawn(path: str, *args: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "dynamo.frontend.cli", f"in=dyn://{path}", *args]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        proc.kill()
        proc.wait()


def wait_models(server, expected: set[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        names = {m["id"] for m in httpx.get(f"{server.v1}/models").json()["data"]}
        if expected <= names:
            return
        assert time.monotonic() < deadline, f"/v1/models is {names}, expected {expected}"
        time.sleep(0.2)


def test_responses_messages_and_embeddings_through_workers(
    start_server, runtime_env, workers, smollm2_gguf, tmp_path, embedding_reference
):
    workers("ep11.chat.generate", "out=echo_full", "--model-name", "echo")
    workers(
        "ep11.embed.generate",
        "out=llamacpp",
        str(smollm2_gguf),
        "--embedding",
        "--extra-engine-args",
        json.dumps({"pooling_type": 1}),
        "--model-name",
        "embed",
    )
    template = tmp_path / "plain.jinja"
    template.write_text("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}")
    workers(
        "ep11.tpl.generate",
        "out=echo_core",
        str(smollm2_gguf),
        "--chat-template",
        str(template),
        "--model-name",
        "templated",
    )
    frontend = start_server("out=dyn", "--enable-anthropic-api", env=runtime_env, healthy=False)
    wait_models(frontend, {"echo", "embed", "templated"})

    client = openai.OpenAI(base_url=frontend.v1, api_key="none", max_retries=0)
    first = client.responses.create(model="echo", input="hello")
    assert first.output_text == "hello" and first.status == "completed"
    with client.responses.stream(
        model="echo", input="again", previous_response_id=first.id
    ) as stream:
        assert stream.get_final_response().output_text == "again"

    # The worker's --chat-template travelled on its model card: the frontend renders with it.
    templated = client.responses.create(model="templated", input="hi", instructions="sys")
    assert templated.output_text == "[system] sys\n[user] hi\n"

    claude = anthropic.Anthropic(base_url=frontend.url, api_key="none", max_retries=0)
    message = claude.messages.create(
        model="echo", max_tokens=50, messages=[{"role": "user", "content": "héllo"}]
    )
    assert message.content[0].text == "héllo" and message.stop_reason == "end_turn"
    with claude.messages.stream(
        model="echo", max_tokens=2, messages=[{"role": "user", "content": "hello"}]
    ) as stream:
        assert stream.get_final_message().stop_reason == "max_tokens"

    expected = embedding_reference.embed(["hello world", "goodbye"], normalize=True)
    got = client.embeddings.create(
        model="embed", input=["hello world", "goodbye"], encoding_format="float"
    )
    for ours, theirs in zip(got.data, expected, strict=True):
        assert max(abs(a - b) for a, b in zip(ours.embedding, theirs, strict=True)) < 1e-9
    rows = {m["id"]: m for m in httpx.get(f"{frontend.v1}/models").json()["data"]}
    assert rows["embed"]["max_model_len"] == 8192


def wait_gone(server, names: set[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while names & (listed := {m["id"] for m in httpx.get(f"{server.v1}/models").json()["data"]}):
        assert time.monotonic() < deadline, f"/v1/models still lists {names & listed}"
        time.sleep(0.2)


def test_a_workers_aliases_are_served_by_the_frontend(start_server, runtime_env, workers):
    worker = workers(
        "ep11alias.chat.generate", "out=echo_full", "--served-model-name", "al-main", "al-b", "al-c"
    )
    frontend = start_server("out=dyn", env=runtime_env, healthy=False)
    wait_models(frontend, {"al-main", "al-b", "al-c"})
    rows = {m["id"]: m for m in httpx.get(f"{frontend.v1}/models").json()["data"]}
    assert {name: rows[name]["root"] for name in ("al-main", "al-b", "al-c")} == dict.fromkeys(
        ("al-main", "al-b", "al-c"), "al-main"
    )
    client = openai.OpenAI(base_url=frontend.v1, api_key="none", max_retries=0)
    chat = client.chat.completions.create(
        model="al-b", messages=[{"role": "user", "content": "hi"}]
    )
    assert chat.choices[0].message.content == "hi" and chat.model == "al-main"
    response = client.responses.create(model="al-c", input="yo")
    assert response.output_text == "yo" and response.model == "al-main"
    # The worker leaving takes every name with it.
    worker.terminate()
    assert worker.wait(30) == 0
    wait_gone(frontend, {"al-main", "al-b", "al-c"})
