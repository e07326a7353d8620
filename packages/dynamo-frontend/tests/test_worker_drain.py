"""Scaling down costs no client its answer (issue 16 item 4): a `dynamo-run in=dyn://...` worker
that gets SIGTERM deregisters, finishes what it can within its grace period
(DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT), hands the other streams over to the `out=dyn` frontend's
request migration and exits 0. Real processes: two mocker workers, a frontend, etcd and NATS.
Once drained, a worker (mocker or llama.cpp) exits promptly, its lease revoked and its last log
line written."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

pytestmark = pytest.mark.integration

MAX_TOKENS = 300
STREAMS = 8
#: The mocker's simulated steps at a quarter of their speed: about 25 ms a token, so a stream
#: lasts several seconds, well past the victim's one-second grace period.
EXTRA = json.dumps({"speedup_ratio": 0.25})


def healthy_workers(url: str) -> int:
    try:
        body = httpx.get(f"{url}/health", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return 0
    return int(body.get("models", {}).get("mock", {}).get("workers", 0))


async def stream(client: httpx.AsyncClient, url: str, started: asyncio.Event) -> list[str]:
    """One streaming chat's SSE lines; `started` is set at its first token."""
    body = {
        "model": "mock",
        "stream": True,
        "max_tokens": MAX_TOKENS,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "one two three four five six " * 20}],
    }
    lines: list[str] = []
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            if line:
                lines.append(line)
                started.set()
    return lines


def test_sigterm_hands_streams_over_and_exits_0(own_runtime_env, start_server, smollm2_gguf):
    env = {**os.environ, **own_runtime_env, "DYN_LOG": "warn"}
    cmd = [sys.executable, "-m", "dynamo.frontend.cli", "in=dyn://drain.backend.generate"]
    cmd += ["out=mocker", str(smollm2_gguf), "--model-name", "mock"]
    cmd += ["--extra-engine-args", EXTRA]
    victim_env = {**env, "DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT": "1"}
    workers = [
        subprocess.Popen(cmd, env=victim_env, stdout=subprocess.DEVNULL),
        subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL),
    ]
    try:
        server = start_server(
            "out=dyn", "--migration-limit", "2", env=own_runtime_env, healthy=False
        )
        deadline = time.monotonic() + 180
        while healthy_workers(server.url) < 2:
            assert time.monotonic() < deadline, "two mocker workers never became ready"
            assert all(w.poll() is None for w in workers), "a worker exited"
            time.sleep(0.2)

        async def drive() -> tuple[list[list[str]], int | None]:
            timeout = httpx.Timeout(60.0)
            async with httpx.AsyncClient(timeout=timeout) as client:
                started = [asyncio.Event() for _ in range(STREAMS)]
                tasks = [asyncio.create_task(stream(client, server.url, e)) for e in started]
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 60)
                workers[0].send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(workers[0].wait, 30)
                return await asyncio.gather(*tasks), code

        answers, code = asyncio.run(drive())
        assert code == 0
        for lines in answers:
            assert not any(line.startswith("event: error") for line in lines), lines[-3:]
            assert lines[-1] == "data: [DONE]"
            usage = json.loads(lines[-2].removeprefix("data: "))["usage"]
            assert usage["completion_tokens"] == MAX_TOKENS
        # Streams on the victim outlived its grace period: they were handed over, not finished.
        metrics = httpx.get(f"{server.url}/metrics").text
        migrations = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith('dynamo_frontend_model_migration_total{model="mock"}')
        ]
        assert migrations and migrations[0] >= 1, migrations
        assert healthy_workers(server.url) == 1  # the victim left the routing set
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
            w.wait()


def etcd_keys(etcd_url: str) -> list[str]:
    """Every key in etcd, read through its JSON gateway."""
    everything = {"key": base64.b64encode(b"\0").decode(), "range_end": "AA=="}
    body = httpx.post(f"{etcd_url}/v3/kv/range", json=everything, timeout=5).json()
    return [base64.b64decode(kv["key"]).decode() for kv in body.get("kvs", [])]


#: How long a worker may take from the end of its drain ("worker stopped", the last thing it
#: logs) to its exit: a functional bound, far above the tens of milliseconds it takes; Python's
#: interpreter teardown alone took 1.5 to 10 s of it on a loaded host before it was skipped.
EXIT_AFTER_DRAIN_S = 10.0


@pytest.mark.parametrize("engine", ["mocker", "llamacpp"])
def test_a_drained_worker_exits_promptly_with_its_lease_revoked_and_logs_flushed(
    own_servers, own_runtime_env, smollm2_gguf, engine
):
    etcd, _ = own_servers
    env = {**os.environ, **own_runtime_env, "DYN_LOG": "info"}
    cmd = [sys.executable, "-m", "dynamo.frontend.cli", "in=dyn://exit.backend.generate"]
    cmd += [f"out={engine}", str(smollm2_gguf), "--model-name", "m"]
    worker = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(
        target=lambda: lines.extend((time.monotonic(), line) for line in worker.stderr),  # type: ignore[union-attr]
        daemon=True,
    )
    try:
        reader.start()
        deadline = time.monotonic() + 180
        while not any("instances/" in key for key in etcd_keys(etcd.url)):
            assert time.monotonic() < deadline, "the worker never registered"
            assert worker.poll() is None, "the worker exited"
            time.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
        exited = time.monotonic()
        # The lease was revoked, not left to expire: its keys are gone the moment it exits.
        assert not etcd_keys(etcd.url)
        reader.join(10)
        stopped = [t for t, line in lines if "worker stopped" in line]
        assert stopped, "".join(line for _, line in lines[-20:])  # the last log line was flushed
        assert exited - stopped[0] < EXIT_AFTER_DRAIN_S
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()
        reader.join(10)
        worker.stderr.close()  # type: ignore[union-attr]
