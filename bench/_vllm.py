"""engine_overhead.py's vLLM side: vLLM's `AsyncLLM` called directly, and `dynamo-run in=http
out=vllm` driven over HTTP, each with 1 and with N concurrent streams.

vLLM batches, so the question at N streams is whether the serving stack (HTTP, preprocessing,
detokenizing per token) keeps up with vLLM's batched decoding. Each side runs on its own: a vLLM
start takes ~40 s and both would compete for the same cores, so direct runs first (then its engine
is shut down), then the server starts. Both use the same engine arguments.

Run it with the vLLM venv's Python (packages/engine-vllm/scripts/vllm_cpu_env.py) on an HF folder
(packages/engine-vllm/scripts/smollm2_hf_folder.py makes SmolLM2's).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import statistics
import time
from collections.abc import Sequence
from typing import Any

import httpx

# vLLM's CPU build sizes its KV cache from this (GiB); unset, it takes most of the machine's memory.
# Both sides get it: the server inherits this process's environment. GPUs ignore it.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

#: The engine arguments of both sides (the SmolLM2 folder is float32; eager skips graph capture).
ENGINE_ARGS = {"dtype": "float32", "enforce_eager": True}


async def _timed_batches(
    one: Any, prompts: Sequence[Any], streams: int, max_tokens: int, rounds: int
) -> list[float]:
    """Tokens/s of `rounds` runs, each `streams` concurrent requests per prompt set pass."""
    rates = []
    cycle = itertools.cycle(prompts)
    for _ in range(rounds):
        batch = [next(cycle) for _ in range(max(streams, len(prompts)))]
        start = time.perf_counter()
        tokens = 0
        for i in range(0, len(batch), streams):
            tokens += sum(await asyncio.gather(*(one(p) for p in batch[i : i + streams])))
        rates.append(tokens / (time.perf_counter() - start))
    return rates


def direct(
    model: str, prompt_ids: list[list[int]], max_tokens: int, n_ctx: int, streams: list[int],
    rounds: int,
) -> dict[int, float]:  # fmt: skip
    """Median tokens/s of vLLM's own AsyncLLM per concurrency level."""
    from vllm import SamplingParams, TokensPrompt
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    async def run() -> dict[int, float]:
        llm = AsyncLLM.from_engine_args(
            AsyncEngineArgs(model=model, max_model_len=n_ctx, **ENGINE_ARGS)
        )
        params = SamplingParams(
            temperature=0, max_tokens=max_tokens, ignore_eos=True, detokenize=False,
            output_kind=RequestOutputKind.DELTA,
        )  # fmt: skip
        ids = itertools.count()

        async def one(prompt: list[int]) -> int:
            n = 0
            async for out in llm.generate(TokensPrompt(prompt_token_ids=prompt), params,
                                          f"bench-{next(ids)}"):  # fmt: skip
                n += len(out.outputs[0].token_ids)
            return n

        try:
            await one(prompt_ids[0])  # warm-up
            return {
                s: statistics.median(await _timed_batches(one, prompt_ids, s, max_tokens, rounds))
                for s in streams
            }
        finally:
            llm.shutdown()

    return asyncio.run(run())


def served(
    url: str, texts: list[str], max_tokens: int, streams: list[int], rounds: int
) -> dict[int, float]:
    """Median tokens/s streamed through the HTTP server per concurrency level (usage chunks)."""

    async def run() -> dict[int, float]:
        async with httpx.AsyncClient(timeout=600) as client:

            async def one(text: str) -> int:
                body = {
                    "model": "bench", "stream": True, "temperature": 0,
                    "max_tokens": max_tokens, "ignore_eos": True,
                    "stream_options": {"include_usage": True},
                    "messages": [{"role": "user", "content": text}],
                }  # fmt: skip
                usage = None
                async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: {"):
                            usage = json.loads(line[6:]).get("usage") or usage
                return usage["completion_tokens"] if usage else 0

            await one(texts[0])  # warm-up
            return {
                s: statistics.median(await _timed_batches(one, texts, s, max_tokens, rounds))
                for s in streams
            }

    return asyncio.run(run())


def server_args(n_ctx: int) -> list[str]:
    return ["--context-length", str(n_ctx), "--extra-engine-args", json.dumps(ENGINE_ARGS)]
