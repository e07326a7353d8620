"""`dynamo-run in=http out=vllm` serving a real vLLM (the CPU build) through the real OpenAI SDK.

One server for the module (a vLLM start is ~40 s on two cores), and one run of vLLM's own
`LLM.generate` as the reference for greedy output.
"""

from __future__ import annotations

import json
import subprocess
import sys

import openai
import pytest
from transformers import AutoTokenizer

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three colours.",
]


@pytest.fixture(scope="module")
def server(start_module_server, smollm2_hf, vllm_testing):
    server = start_module_server(
        *vllm_testing.server_args(smollm2_hf), env=vllm_testing.server_env, timeout=600
    )
    yield server
    # SIGTERM, not the factory's SIGKILL: vLLM's engine core process outlives a killed parent.
    assert server.stop() == 0


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.v1, api_key="none", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def model(client) -> str:
    (entry,) = client.models.list().data
    return entry.id


@pytest.fixture(scope="module")
def tokenizer(smollm2_hf):
    return AutoTokenizer.from_pretrained(smollm2_hf)


def chat_ids(tokenizer, content: str) -> list[int]:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer.encode(text, add_special_tokens=False)


def test_models_lists_vllms_context_length(client, model, vllm_testing):
    (entry,) = client.models.list().data
    assert entry.model_extra["max_model_len"] == vllm_testing.context_length


def test_greedy_output_equals_vllms_own_generate(
    client, model, tokenizer, smollm2_hf, vllm_testing
):
    max_tokens = 24
    prompt_ids = [chat_ids(tokenizer, p) for p in PROMPTS]
    expected = vllm_testing.reference_generate(smollm2_hf, prompt_ids, max_tokens)
    for ids, want in zip(prompt_ids, expected, strict=True):
        # Completions with token ids: exactly these ids go in; the text is compared decoded.
        got = client.completions.create(
            model=model, prompt=ids, max_tokens=max_tokens, temperature=0
        )
        eos = tokenizer.eos_token_id
        want_ids = want[:-1] if want and want[-1] == eos else want
        assert got.choices[0].text == tokenizer.decode(want_ids)
        assert got.usage.completion_tokens == len(want)


def test_chat_and_completions(client, model):
    chat = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPTS[0]}], temperature=0
    )
    assert "Paris" in chat.choices[0].message.content
    assert chat.choices[0].finish_reason == "stop"
    text = client.completions.create(model=model, prompt="One, two, three,", max_tokens=5)
    assert text.choices[0].finish_reason == "length"
    assert text.usage.completion_tokens == 5


def test_streaming_with_usage(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPTS[1]}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert text
    assert usage.completion_tokens <= 16
    assert usage.prompt_tokens > 10
    whole = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPTS[1]}], max_tokens=16,
        temperature=0,
    )  # fmt: skip
    assert whole.choices[0].message.content == text


def test_stop_strings_and_max_tokens(client, model):
    full = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPTS[0]}], temperature=0
    ).choices[0]
    assert "Paris" in full.message.content
    cut = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPTS[0]}],
        temperature=0,
        stop=["Paris"],
    ).choices[0]
    assert cut.message.content == full.message.content.split("Paris")[0]
    assert cut.finish_reason == "stop"
    short = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPTS[2]}], max_tokens=3
    )
    assert short.usage.completion_tokens == 3
    assert short.choices[0].finish_reason == "length"


def test_seeded_sampling_repeats_and_logprobs_come_from_vllm(client, model):
    def sample():
        return client.completions.create(
            model=model, prompt="The weather today is", max_tokens=8, temperature=1.0,
            top_p=0.9, seed=1234, logprobs=2,
        ).choices[0]  # fmt: skip

    first, second = sample(), sample()
    assert first.text == second.text
    lp = first.logprobs
    assert len(lp.token_logprobs) == 8
    assert all(v <= 0 for v in lp.token_logprobs)
    assert all(len(top) == 2 for top in lp.top_logprobs)


def test_guided_choice(client, model):
    got = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Is the sky blue? Answer yes or no."}],
        extra_body={"guided_choice": ["yes", "no"]},
        max_tokens=5,
    )
    assert got.choices[0].message.content in {"yes", "no"}


def test_prompt_too_long_is_a_400(client, model):
    with pytest.raises(openai.BadRequestError, match="context length"):
        client.completions.create(model=model, prompt=[1] * 3000, max_tokens=4)


def _dynamo_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dynamo.frontend.cli", "in=http", "out=vllm", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_gguf_is_refused_with_one_line(smollm2_gguf, vllm_installed):
    out = _dynamo_run(str(smollm2_gguf))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "dynamo-run: error: vLLM 0.32.0 cannot load GGUF files (its GGUF loader moved to the "
        "vllm-gguf-plugin package): pass an HF folder or repo id, or use out=llamacpp"
    )
    assert "Traceback" not in out.stderr


def test_unknown_extra_engine_arg_is_one_line(smollm2_hf):
    out = _dynamo_run(str(smollm2_hf), "--extra-engine-args", json.dumps({"max_len": 1}))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        "dynamo-run: error: --extra-engine-args: vLLM's AsyncEngineArgs has no field max_len"
    )
    assert "Traceback" not in out.stderr
