"""The seed's "Writing your own engine in Python" worker (examples/hello_worker.py), run as is."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dynamo.llm.discovery import ModelAdded, ModelRemoved, ModelWatcher
from dynamo.llm.model_type import ModelType
from dynamo.runtime import DistributedRuntime

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = Path(__file__).parents[3] / "examples" / "hello_worker.py"


async def test_seed_worker_registers_serves_and_leaves(runtime_env, smollm2_gguf):
    pytest.importorskip("llama_cpp")
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting a process does not wait on it
        [sys.executable, str(EXAMPLE)],
        env={**os.environ, **runtime_env, "MODEL_PATH": str(smollm2_gguf), "MODEL_NAME": "seed"},
        stderr=subprocess.PIPE,
        text=True,
    )
    runtime = DistributedRuntime()
    await runtime.ensure_connected()
    watcher = ModelWatcher(runtime)
    events = watcher.events()
    try:
        async with asyncio.timeout(60):
            event = await anext(events)
            while event.name != "seed":
                event = await anext(events)
        assert isinstance(event, ModelAdded) and event.model_type is ModelType.Backend
        assert event.endpoint_path == "namespace.component.endpoint"
        client = watcher.models["seed"].client
        await client.wait_for_instances(60)

        # What the frontend's preprocessor sends a Backend worker: token ids in, token ids out.
        card = event.card
        prompt = card.tokenizer().encode(
            "<|im_start|>user\nSay hello<|im_end|>\n<|im_start|>assistant\n"
        )
        request = {
            "token_ids": prompt.ids,
            "stop_conditions": {"max_tokens": 8},
            "sampling_options": {"temperature": 0.0},
            "eos_token_ids": card.eos_token_ids,
        }
        chunks = [chunk async for chunk in client.generate(request)]
        tokens = [t for chunk in chunks for t in chunk["token_ids"]]
        assert 1 <= len(tokens) <= 8
        assert chunks[-1].get("finish_reason") in {"stop", "length"}
        assert card.tokenizer().decode(tokens).strip()

        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            while not isinstance(event, ModelRemoved):
                event = await anext(events)
        assert event.name == "seed"
        assert await asyncio.to_thread(proc.wait, 15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
        await events.aclose()
        await watcher.stop()
        await runtime.close()
    assert "Traceback" not in err, err
