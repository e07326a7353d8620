"""OpenAI parity across the network: a remote frontend refuses and honours per the features and
parser names its workers published on their model cards (real etcd and NATS, subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import openai
import pytest

pytestmark = pytest.mark.integration

CALL = '<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>'
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def wait_models(server, expected: set[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        data = httpx.get(f"{server.v1}/models").json()["data"]
        if expected <= {m["id"] for m in data}:
            return
        assert time.monotonic() < deadline, data
        time.sleep(0.1)


@pytest.fixture
def workers(own_runtime_env):
    env = {**os.environ, **own_runtime_env, "DYN_TOKEN_ECHO_DELAY_MS": "0"}
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> None:
        cmd = [sys.executable, "-m", "dynamo.frontend.cli", *args]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL))

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_remote_features_and_parsers(start_server, workers, own_runtime_env, smollm2_gguf):
    # etcd and NATS of its own: the session's shared servers may still list another test's
    # killed worker under the same model name ("echo"), with other features.
    runtime_env = own_runtime_env
    workers(
        "in=dyn://parity.mocker.generate",
        "out=mocker",
        str(smollm2_gguf),
        "--model-name",
        "mock",
        "--extra-engine-args",
        '{"speedup_ratio": 0}',
    )
    workers(
        "in=dyn://parity.echo.generate",
        "out=echo_core",
        str(smollm2_gguf),
        "--model-name",
        "echo",
        "--tool-call-parser",
        "hermes",
    )
    frontend = start_server("out=dyn", env=runtime_env, healthy=False)
    wait_models(frontend, {"mock", "echo"})
    client = openai.OpenAI(base_url=frontend.v1, api_key="x", max_retries=0)
    hi = [{"role": "user", "content": "Hello there"}]

    resp = client.chat.completions.create(
        model="mock", messages=hi, max_tokens=3, logprobs=True, top_logprobs=2, n=2
    )
    assert [len(c.logprobs.content) for c in resp.choices] == [3, 3]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="mock", messages=hi, response_format={"type": "json_object"}
        )
    assert e.value.body["param"] == "response_format"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="echo", messages=hi, logprobs=True)
    assert e.value.body["param"] == "logprobs"

    # The worker's --tool-call-parser reached this frontend with its card.
    resp = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": CALL}],
        tools=[TOOL],
        extra_body={"nvext": {"use_raw_prompt": True, "ignore_eos": True}},
    )
    assert resp.choices[0].finish_reason == "tool_calls"
    assert resp.choices[0].message.tool_calls[0].function.name == "f"
