"""Workers whose event loop is blocked past their etcd lease's TTL while they start (as
`import vllm` blocks a vLLM worker's for 12-80 s against a 10 s TTL), behind
`in=http out=dyn --router-mode kv` (real etcd, NATS and mocker engines): each lease expires and
the keeper replaces it, and the model is still listed and served.

Two places for the block: in the engine's start, before the worker registers (its first lease
holds no key yet), and right after it registers, so that the model entry and the shared card
expire with the lease and come back on the new one (the frontend may see the model go and
come back).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import httpx
import openai
import pytest

from dynamo.testing import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "blocked"
TTL = 2
BLOCK = 3 * TTL
RE_AGAIN = re.compile(r"new lease \w+ \(was \w+\), (\d+) keys registered again")
EXTRA = {"num_gpu_blocks": 256, "block_size": 16, "speedup_ratio": 100}

#: `dynamo-run in=dyn://... out=mocker` with the block put where `BLOCK_WHERE` says: `start`
#: sleeps in the engine's start, `register` right after the worker registers its model.
#: `time.sleep`, not `asyncio.sleep`: the event loop, and with it the lease keeper, stands still.
WORKER = """
import os, sys, time
from dynamo.engines.mocker import MockerEngine
import dynamo.frontend.modes.worker as worker
from dynamo.frontend.cli import main

seconds, where = float(os.environ["BLOCK_SECONDS"]), os.environ["BLOCK_WHERE"]
if where == "start":
    start = MockerEngine.start.__func__

    async def blocked_start(cls, config):
        time.sleep(seconds)
        return await start(cls, config)

    MockerEngine.start = classmethod(blocked_start)
else:
    register = worker.register_llm

    async def blocked_register(*args, **kwargs):
        card = await register(*args, **kwargs)
        time.sleep(seconds)
        return card

    worker.register_llm = blocked_register
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("where", ["start", "register"])
def test_model_is_served_after_the_workers_leases_expired(
    where, own_runtime_env, start_server, smollm2_gguf, tmp_path
):
    env = {
        **os.environ,
        **own_runtime_env,
        "DYN_ETCD_LEASE_TTL": str(TTL),
        "BLOCK_SECONDS": str(BLOCK),
        "BLOCK_WHERE": where,
    }
    cmd = [
        sys.executable, "-c", WORKER, "in=dyn://blocked.backend.generate", "out=mocker",
        str(smollm2_gguf), "--model-name", MODEL, "--extra-engine-args", json.dumps(EXTRA),
    ]  # fmt: skip
    server = start_server("out=dyn", "--router-mode", "kv", env=own_runtime_env, healthy=False)
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = []
    for path in logs:
        with path.open("w") as out:
            workers.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT))
    try:
        # A block after registering: the model entry and the card expired with the lease, and
        # the keeper wrote them again on the new one. A block in the engine's start: no key
        # was on the lease yet.
        keys = 2 if where == "register" else 0

        def replaced() -> bool:
            for proc, path in zip(workers, logs, strict=True):
                assert proc.poll() is None, f"a worker exited:\n{path.read_text()[-3000:]}"
            # Each worker's keeper found its lease gone and took a new one.
            return all(
                any(int(n) >= keys for n in RE_AGAIN.findall(path.read_text())) for path in logs
            )

        wait_for(replaced, within=120, what="both workers' leases expired and replaced")
        wait_for(
            lambda: all("serving blocked.backend.generate" in p.read_text() for p in logs),
            within=120,
            what="both workers serving",
        )

        def listed() -> bool:
            models = httpx.get(f"{server.v1}/models").json()["data"]
            return [m["id"] for m in models] == [MODEL]

        try:
            wait_for(listed, within=60, what=f"{MODEL} in /v1/models")
        except AssertionError as e:
            text = "\n".join(
                f"--- worker {i}:\n{p.read_text()[-2500:]}" for i, p in enumerate(logs)
            )
            pytest.fail(f"{e}\n{text}\n--- frontend:\n{server.output()[-2500:]}")
        client = openai.OpenAI(base_url=server.v1, api_key="none", max_retries=0, timeout=60)
        got = client.completions.create(model=MODEL, prompt="Hello there", max_tokens=4)
        assert got.choices[0].finish_reason == "length"
        assert got.usage.completion_tokens == 4
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
