"""`--router-mode kv`: the workers' own load reports (`kv_metrics`) on the frontend's /metrics,
per worker, following the workers as they come and go (mocker workers, real etcd and NATS)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import httpx
import openai
import pytest

from dynamo.testing import wait_for

pytestmark = pytest.mark.integration

GAUGE = re.compile(
    r'^dynamo_frontend_(worker_[a-z_]+)\{model="mock",worker="([0-9a-f]+)"\} (\S+)$', re.M
)
LOAD_GAUGES = {
    "worker_kv_usage",
    "worker_kv_used_blocks",
    "worker_kv_total_blocks",
    "worker_requests_waiting",
    "worker_request_slots_used",
    "worker_request_slots_total",
    "worker_prefix_cache_hit_rate",
}
EXTRA = {"num_gpu_blocks": 512, "block_size": 16, "max_num_seqs": 8, "speedup_ratio": 100}


def worker_gauges(server) -> dict[str, dict[str, float]]:
    """worker label -> {load gauge name: value}, for the model `mock`."""
    out: dict[str, dict[str, float]] = {}
    for name, worker, value in GAUGE.findall(httpx.get(f"{server.url}/metrics").text):
        if name in LOAD_GAUGES:
            out.setdefault(worker, {})[name] = float(value)
    return out


def test_worker_load_gauges_follow_the_workers(runtime_env, start_server, smollm2_gguf):
    env = {**os.environ, **runtime_env, "DYN_LOG": "warn"}
    cmd = [
        sys.executable,
        "-m",
        "dynamo.frontend.cli",
        "in=dyn://wload.backend.generate",
        "out=mocker",
        str(smollm2_gguf),
        "--model-name",
        "mock",
        "--extra-engine-args",
        json.dumps(EXTRA),
    ]
    workers = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL) for _ in range(2)]
    try:
        server = start_server("out=dyn", "--router-mode", "kv", env=runtime_env, healthy=False)
        # Each worker reports itself when it starts: its size, and nothing in use.
        gauges = wait_for(
            lambda: (
                (g := worker_gauges(server))
                and len(g) == 2
                and all(set(m) == LOAD_GAUGES for m in g.values())
                and g
            ),
            what="two workers' load gauges",
        )
        for metrics in gauges.values():
            assert metrics["worker_kv_total_blocks"] == 512
            assert metrics["worker_request_slots_total"] == 8
            assert metrics["worker_kv_usage"] == 0.0
            assert metrics["worker_kv_used_blocks"] == 0.0
            assert metrics["worker_request_slots_used"] == 0.0
            assert metrics["worker_requests_waiting"] == 0.0
        # The router's own view has the same workers.
        text = httpx.get(f"{server.url}/metrics").text
        for worker in gauges:
            assert f'dynamo_frontend_worker_active_blocks{{model="mock",worker="{worker}"}}' in text

        # The same prompt twice: the worker that served it reports prefix cache hits.
        client = openai.OpenAI(base_url=server.v1, api_key="none", max_retries=0)
        prompt = "a long shared document " * 40
        for _ in range(2):
            client.completions.create(model="mock", prompt=prompt, max_tokens=4)
        wait_for(
            lambda: any(
                m.get("worker_prefix_cache_hit_rate", 0) > 0 for m in worker_gauges(server).values()
            ),
            what="a prefix cache hit rate above 0",
        )

        # The router compared its predicted prefix hits with what the workers reused (the
        # mocker's cached_tokens), and learned from both first tokens.
        text = httpx.get(f"{server.url}/metrics").text
        router = dict(
            re.findall(r'^dynamo_frontend_router_([a-z_]+)\{model="mock"\} (\S+)$', text, re.M)
        )
        assert float(router["cache_reports_total"]) == 2
        assert float(router["actual_cached_tokens_total"]) > 0  # the second request's hits
        assert "cached_tokens_error_total" in router
        assert float(router["ttft_prediction_error"]) >= 0

        # A worker that leaves takes its gauges with it.
        workers[0].send_signal(signal.SIGTERM)
        assert workers[0].wait(30) == 0
        remaining = wait_for(
            lambda: (g := worker_gauges(server)) and len(g) == 1 and g, what="one worker left"
        )
        assert set(remaining) < set(gauges)
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
