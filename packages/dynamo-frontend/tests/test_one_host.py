"""A frontend and two workers on one host with nothing else installed (issue 14 item 2): file
discovery and the TCP request plane; no etcd or NATS process exists (ETCD_ENDPOINTS points
nowhere and NATS_SERVER is unset, so a connection attempt would hang the start)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import openai
import orjson
import pytest

from dynamo.frontend.cli import main

pytestmark = pytest.mark.integration

ONE_HOST = ["--discovery-backend", "file", "--request-plane", "tcp"]


def _models(url: str) -> set[str]:
    return {m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]}


def _instances(root) -> list[dict]:
    records = []
    for path in (root / "keys").iterdir():
        if path.name.startswith("instances"):
            with path.open("rb") as f:
                f.readline()
                records.append(orjson.loads(f.read()))
    return records


@pytest.fixture
def one_host_env(tmp_path, monkeypatch):
    monkeypatch.delenv("NATS_SERVER", raising=False)
    dead = "http://127.0.0.1:9"  # nothing listens: file discovery must not need it
    monkeypatch.setenv("ETCD_ENDPOINTS", dead)
    return {"DYN_FILE_KV": str(tmp_path), "ETCD_ENDPOINTS": dead}


def test_a_frontend_and_two_workers_with_nothing_else(
    one_host_env, tmp_path, start_server, smollm2_gguf
):
    env = {**os.environ, **one_host_env, "DYN_TOKEN_ECHO_DELAY_MS": "0"}
    worker = [sys.executable, "-m", "dynamo.frontend.cli", "in=dyn://solo.backend.generate"]
    worker += ["out=echo_core", str(smollm2_gguf), "--model-name", "smol", *ONE_HOST]
    workers = [
        subprocess.Popen(worker, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    try:
        frontend = start_server("out=dyn", *ONE_HOST, env=one_host_env, healthy=False)
        deadline = time.monotonic() + 60
        while _models(frontend.url) != {"smol"} or len(_instances(tmp_path)) < 2:
            assert time.monotonic() < deadline, frontend.output()
            assert all(w.poll() is None for w in workers), workers[0].stderr.read().decode()
            time.sleep(0.1)
        records = _instances(tmp_path)
        assert {next(iter(r["transport"])) for r in records} == {"tcp"}
        # The card's tokenizer reached the frontend without NATS: it applies the chat template.
        client = openai.OpenAI(base_url=f"{frontend.url}/v1", api_key="none", max_retries=0)
        whole = {"nvext": {"ignore_eos": True}}  # echo_core echoes the prompt up to its EOS
        answer = client.chat.completions.create(
            model="smol",
            messages=[{"role": "user", "content": "Tell me a story"}],
            extra_body=whole,
        )
        assert "<|im_start|>user\nTell me a story<|im_end|>" in answer.choices[0].message.content
        stream = client.chat.completions.create(
            model="smol",
            messages=[{"role": "user", "content": "streamed"}],
            stream=True,
            extra_body=whole,
        )
        assert "streamed" in "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

        # One worker dies: requests go to the other, and its record leaves at once.
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        for _ in range(4):
            reply = client.chat.completions.create(
                model="smol", messages=[{"role": "user", "content": "still?"}], extra_body=whole
            )
            assert "still?" in reply.choices[0].message.content
        deadline = time.monotonic() + 3
        while len(_instances(tmp_path)) != 1:
            assert time.monotonic() < deadline, "the dead worker's record stayed"
            time.sleep(0.1)
        # The last one leaves cleanly: the model goes.
        workers[1].send_signal(signal.SIGTERM)
        assert workers[1].wait(15) == 0
        deadline = time.monotonic() + 5
        while _models(frontend.url):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
            w.wait()
            w.stderr.close()


@pytest.mark.parametrize("flag", [["--request-plane", "tcp"], ["--discovery-backend", "file"]])
def test_the_distributed_flags_need_a_distributed_run(flag, capsys):
    assert main(["in=text", "out=echo_full", *flag]) == 2
    assert f"{flag[0]} is a distributed flag" in capsys.readouterr().err


def test_kv_routing_without_nats_is_refused_at_start(one_host_env, monkeypatch, capsys):
    for name, value in one_host_env.items():
        monkeypatch.setenv(name, value)
    args = ["in=http", "out=dyn", "--router-mode", "kv", *ONE_HOST]
    assert main(args) == 2
    assert "--router-mode kv listens to the workers' KV events on NATS" in capsys.readouterr().err
