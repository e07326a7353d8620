"""`dynamo-run in=http out=llamacpp` returns what llama-cpp-python's own chat API returns."""

from __future__ import annotations

import llama_cpp
import openai
import pytest

MESSAGES = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "Name a colour."},
    ],
]


@pytest.fixture(scope="module")
def server(smollm2_gguf, start_module_server):
    running = start_module_server(
        "out=llamacpp",
        str(smollm2_gguf),
        "--model-name",
        "smol",
        "--context-length",
        "2048",
        env={"DYN_LOG": "warn"},
    )
    yield running.url
    assert running.stop() == 0


@pytest.fixture(scope="module")
def direct(smollm2_gguf):
    return llama_cpp.Llama(model_path=str(smollm2_gguf), n_ctx=2048, verbose=False)


@pytest.mark.parametrize("messages", MESSAGES)
def test_greedy_chat_equals_llama_cpp(server, direct, messages):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="none", max_retries=0)
    ours = client.chat.completions.create(
        model="smol", messages=messages, temperature=0, max_tokens=40
    )
    theirs = direct.create_chat_completion(messages=messages, temperature=0, max_tokens=40)
    assert ours.choices[0].message.content == theirs["choices"][0]["message"]["content"]
    assert ours.choices[0].finish_reason == theirs["choices"][0]["finish_reason"]
    assert ours.usage.prompt_tokens == theirs["usage"]["prompt_tokens"]


def test_streaming_equals_unary(server):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="none", max_retries=0)
    unary = client.chat.completions.create(
        model="smol", messages=MESSAGES[0], temperature=0, max_tokens=30
    )
    stream = client.chat.completions.create(
        model="smol", messages=MESSAGES[0], temperature=0, max_tokens=30, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == unary.choices[0].message.content
