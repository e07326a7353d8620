"""Scaling down costs no client its answer (issue 16 item 4): a `dynamo-run in=dyn://...` worker
that gets SIGTERM deregisters, finishes what it can within its grace period
(DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT), hands the other streams over to the `out=dyn` frontend's
request migration and exits 0. Real processes: two mocker workers, a frontend, etcd and NATS."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
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
