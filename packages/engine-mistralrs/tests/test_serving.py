"""`dynamo-run in=http out=mistralrs` against mistral.rs's own API, on the SmolLM2 GGUF, offline."""

from __future__ import annotations

import mistralrs
import openai
import pytest

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server(smollm2_gguf, start_module_server):
    running = start_module_server(
        "out=mistralrs",
        str(smollm2_gguf),
        "--model-name",
        "smol",
        env={"DYN_LOG": "warn", "HF_HUB_OFFLINE": "1"},
    )
    yield running.url
    assert running.stop() == 0


def test_greedy_chat_equals_mistralrs_directly(server, smollm2_gguf):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="none", max_retries=0)
    ours = client.chat.completions.create(
        model="smol", messages=QUESTION, temperature=0, max_tokens=16
    )
    runner = mistralrs.Runner(
        which=mistralrs.Which.GGUF(
            quantized_model_id=str(smollm2_gguf.parent), quantized_filename=smollm2_gguf.name
        ),
        token_source="none",
    )
    theirs = runner.send_chat_completion_request(
        mistralrs.ChatCompletionRequest(
            messages=QUESTION, model="smol", max_tokens=16, temperature=0.0
        )
    )
    assert ours.choices[0].message.content == theirs.choices[0].message.content
    assert ours.usage.completion_tokens == theirs.usage.completion_tokens


def test_streaming_and_completions(server):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="none", max_retries=0)
    stream = client.chat.completions.create(
        model="smol", messages=QUESTION, temperature=0, max_tokens=8, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    unary = client.chat.completions.create(
        model="smol", messages=QUESTION, temperature=0, max_tokens=8
    )
    assert text == unary.choices[0].message.content
    completion = client.completions.create(
        model="smol", prompt="The capital of France is", max_tokens=5, temperature=0
    )
    assert completion.choices[0].text


def test_completions_stream_in_slices(server):
    """mistral.rs's API does not stream completions: the engine sends them in slices of 16
    tokens, each a chunk, and their text is the unary answer's."""
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="none", max_retries=0)
    body = {"model": "smol", "prompt": "Once upon a time", "max_tokens": 24, "temperature": 0}
    extra = {"ignore_eos": True}
    chunks = [
        c.choices[0].text
        for c in client.completions.create(**body, stream=True, extra_body=extra)
        if c.choices and c.choices[0].text
    ]
    unary = client.completions.create(**body, extra_body=extra)
    assert len(chunks) > 1 and "".join(chunks) == unary.choices[0].text
    assert unary.usage.completion_tokens == 24
