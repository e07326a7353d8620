"""`dynamo-run in=http out=llamacpp` returns what llama-cpp-python's own chat API returns."""

from __future__ import annotations

import contextlib
import json
import signal
import time

import httpx
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
    # Flash attention, as out=llamacpp uses it (llama.cpp's default; llama-cpp-python's is off).
    return llama_cpp.Llama(model_path=str(smollm2_gguf), n_ctx=2048, flash_attn=True, verbose=False)


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


def test_force_quit_ends_streams_and_exits_at_once(smollm2_gguf, start_server):
    """Issue 18 item 3: a second Ctrl-C (uvicorn's force quit) with a stream in flight stops
    generation within about a token and exits; it used to wait for the whole generation."""
    server = start_server("out=llamacpp", str(smollm2_gguf), "--model-name", "smol")
    body = {
        "model": "smol",
        "messages": [{"role": "user", "content": "Write a long essay"}],
        "max_tokens": 4000,
        "ignore_eos": True,
        "stream": True,
    }
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", f"{server.v1}/chat/completions", json=body) as response,
    ):
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data: {"))
        started = time.monotonic()
        server.proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGINT)
        server.proc.wait(15)
        rest = []
        with contextlib.suppress(httpx.HTTPError):  # cut off, or ended with an error event
            rest.extend(lines)
    assert time.monotonic() - started < 15
    assert not any('"finish_reason":"length"' in line for line in rest)
    assert "Traceback" not in server.output()


def test_json_output_and_logprobs_over_http(server):
    """Issue 15 through the whole stack: response_format and logprobs reach llama.cpp."""
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="none", max_retries=0)
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string"}},
        "required": ["colour"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model="smol",
        messages=MESSAGES[1],
        temperature=0,
        max_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
        logprobs=True,
        top_logprobs=2,
    )
    choice = reply.choices[0]
    assert list(json.loads(choice.message.content)) == ["colour"]
    assert choice.logprobs is not None and choice.logprobs.content
    for entry in choice.logprobs.content:
        # The model's own distribution: the grammar may force a token it did not rank first.
        first, second = entry.top_logprobs
        assert first.logprob >= second.logprob and entry.logprob <= first.logprob
