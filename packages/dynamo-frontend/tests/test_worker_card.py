"""A worker's published card says what its engine runs with: the engine declares it
(`Engine.runtime`) and the worker, which built the card, puts it on (the engine never edits the
card). Routers hash KV blocks with the card's block size, so it must be the mocker's own."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import pytest

from dynamo.llm.discovery import ModelAdded, ModelWatcher
from dynamo.runtime import DistributedRuntime

pytestmark = pytest.mark.integration


async def test_the_worker_publishes_the_block_size_its_engine_chose(runtime_env, smollm2_gguf):
    cmd = [
        sys.executable,
        "-m",
        "dynamo.frontend.cli",
        "in=dyn://wcard.backend.generate",
        "out=mocker",
        str(smollm2_gguf),
        "--model-name",
        "mock-card",
        "--extra-engine-args",
        json.dumps({"block_size": 32, "num_gpu_blocks": 64}),
    ]
    env = {**os.environ, **runtime_env, "DYN_LOG": "warn"}
    worker = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=subprocess.DEVNULL)
    runtime = DistributedRuntime()
    await runtime.ensure_connected()
    watcher = ModelWatcher(runtime)
    events = watcher.events()
    try:
        added = None
        while added is None:
            event = await asyncio.wait_for(anext(events), 120)
            if isinstance(event, ModelAdded) and event.name == "mock-card":
                added = event
        # The model's own card says 16 (the default); the mocker runs with 32.
        assert added.card.kv_cache_block_size == 32
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), 60)
        await events.aclose()
        await watcher.stop()
        await runtime.close()
