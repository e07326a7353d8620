"""engine_overhead.py's vLLM side: vLLM's `AsyncLLM` called directly, and `dynamo-run in=http
out=vllm` driven over HTTP, at 1 and at N concurrent streams, measured interleaved.

vLLM batches, so the question at N streams is whether the serving stack (HTTP, preprocessing,
detokenizing per token) keeps up with vLLM's batched decoding. Both engines stay up for the whole
run (an idle vLLM engine waits on its input queue and costs no CPU), and each round measures
direct then served, the next round served then direct, and so on (A B, B A, ...): whatever else
loads the machine meanwhile hits both sides alike, and each round gives one paired ratio. The
direct engine gets the engine arguments `out=vllm` gives vLLM (our defaults, then the flags),
so only the serving stack differs.

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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

# vLLM's CPU build sizes its KV cache from this (GiB); unset, it takes most of the machine's memory.
# Both sides get it: the server inherits this process's environment. GPUs ignore it.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

#: The engine arguments of both sides (the SmolLM2 folder is float32; eager skips graph capture).
ENGINE_ARGS = {"dtype": "float32", "enforce_eager": True}

One = Callable[[Any], Awaitable[int]]


async def timed_batch(one: One, prompts: Sequence[Any], streams: int) -> float:
    """Tokens/s of one pass: every prompt at least once, `streams` requests at a time."""
    cycle = itertools.cycle(prompts)
    batch = [next(cycle) for _ in range(max(streams, len(prompts)))]
    start = time.perf_counter()
    tokens = 0
    for i in range(0, len(batch), streams):
        tokens += sum(await asyncio.gather(*(one(p) for p in batch[i : i + streams])))
    return tokens / (time.perf_counter() - start)


async def interleaved(
    direct: One, served: One, prompt_ids: Sequence[Any], texts: Sequence[str],
    streams: Sequence[int], rounds: int,
) -> dict[int, dict[str, Any]]:  # fmt: skip
    """Per concurrency level: each side's tokens/s per round, measured in alternating order."""
    out: dict[int, dict[str, Any]] = {}
    for s in streams:
        rates: dict[str, list[float]] = {"direct": [], "served": []}
        for r in range(rounds):
            order = ("direct", "served") if r % 2 == 0 else ("served", "direct")
            for side in order:
                one, prompts = (direct, prompt_ids) if side == "direct" else (served, texts)
                rates[side].append(await timed_batch(one, prompts, s))
        out[s] = summary(rates["direct"], rates["served"])
    return out


def summary(direct: list[float], served: list[float]) -> dict[str, Any]:
    """Medians, and the median of the rounds' paired ratios (each round's served over direct)."""
    return {
        "direct_tok_s": round(statistics.median(direct), 1),
        "served_tok_s": round(statistics.median(served), 1),
        "ratio": round(statistics.median(s / d for s, d in zip(served, direct, strict=True)), 3),
        "direct_each": [round(x, 1) for x in direct],
        "served_each": [round(x, 1) for x in served],
    }


def engine_kwargs(model: str, n_ctx: int) -> dict[str, Any]:
    """What `dynamo-run out=vllm MODEL --context-length N --extra-engine-args ENGINE_ARGS` gives
    `AsyncEngineArgs`, from the engine's own mapping."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    from dynamo.engines.vllm._args import DEFAULTS

    fields = set(AsyncEngineArgs.__dataclass_fields__)
    ours = {k: v for k, v in DEFAULTS.items() if k in fields}
    return {**ours, "max_model_len": n_ctx, **ENGINE_ARGS, "model": model}


async def compare(
    model: str, url: str, prompt_ids: list[list[int]], texts: list[str], max_tokens: int,
    n_ctx: int, streams: Sequence[int], rounds: int,
) -> dict[int, dict[str, Any]]:  # fmt: skip
    """vLLM's own AsyncLLM in this process against the server at `url` (already up)."""
    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    from dynamo.engines.vllm._engine import _token_prompt

    llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_kwargs(model, n_ctx)))
    params = SamplingParams(
        temperature=0, max_tokens=max_tokens, ignore_eos=True, detokenize=False,
        output_kind=RequestOutputKind.DELTA,
    )  # fmt: skip
    ids = itertools.count()

    async def direct(prompt: list[int]) -> int:
        n = 0
        async for out in llm.generate(_token_prompt(prompt), params, f"bench-{next(ids)}"):
            n += len(out.outputs[0].token_ids)
        return n

    try:
        async with httpx.AsyncClient(timeout=600) as client:

            async def served(text: str) -> int:
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

            await direct(prompt_ids[0])  # warm-up, both sides
            await served(texts[0])
            return await interleaved(direct, served, prompt_ids, texts, streams, rounds)
    finally:
        llm.shutdown()


def server_args(n_ctx: int) -> list[str]:
    return ["--context-length", str(n_ctx), "--extra-engine-args", json.dumps(ENGINE_ARGS)]
