"""Continuous batching in `out=llamacpp`: aggregate tokens/s at N concurrent streams vs one.

Three measurements per round, in one process, on the same chat prompts (greedy, EOS ignored,
the same thread count and flash attention on every side, and prefix reuse on both sides or on
neither: `--prefix-cache`):

- direct: llama-cpp-python's own `Llama.generate`, one request at a time;
- engine x1: `LlamaCppEngine` (the engine `dynamo-run out=llamacpp` serves), one request at a time;
- engine xN: the same engine with N requests in flight at once (N = --streams, also its slots).

Rates are generated tokens over wall time. Rounds alternate the three so they see the same load.

Each side's time inside `llama_decode` (the matrix work, the same for both sides at one stream)
is clocked apart from the rest: on a shared machine the decode's own time swings between rounds
by more than the sides differ, the time around it does not. `engine_1_overhead_ms_per_token`
against `direct_overhead_ms_per_token` is what the engine adds per token, and
`engine_1_vs_direct_at_equal_decode` the ratio of the two rates had each side's decode taken
direct's median time. `engine_N_overhead_ms_per_token` is the same split for the N-stream side:
what the decode thread adds around each batched step (batch building, N samplings, the hand-off),
per token of the N.

    uv run python bench/llamacpp_batching.py --streams 8 --max-tokens 64 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

from _common import PROMPTS, default_model

#: More prompts than PROMPTS, so that N streams are N different requests.
EXTRA_PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "How do plants make food?",
    "Tell me a joke about cats.",
    "Why is the sky blue?",
    "Give three tips for learning to cook.",
    "Explain what a prime number is.",
    "Describe a sunset over the mountains.",
]


def prompt_ids(model_path: str, count: int) -> list[list[int]]:
    from dynamo.llm.chat_template import PromptFormatter
    from dynamo.llm.model_card import load_card

    card = load_card(model_path)
    texts = (PROMPTS + EXTRA_PROMPTS) * (1 + count // (len(PROMPTS) + len(EXTRA_PROMPTS)))
    formatter = PromptFormatter(card)
    return [
        card.tokenizer()
        .encode(formatter.render([{"role": "user", "content": t}]), add_special_tokens=False)
        .ids
        for t in texts[:count]
    ]


class DecodeClock:
    """Seconds spent inside `llama_decode`, whoever calls it: `Llama.generate` calls the
    bindings module's function (`llama_cpp.llama_cpp`), the engine's decode thread the package's
    re-export of it; both are wrapped (one caller at a time here)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def install(self) -> None:
        import llama_cpp
        import llama_cpp.llama_cpp as bindings

        original = bindings.llama_decode

        def timed(ctx, batch):
            start = time.perf_counter()
            try:
                return original(ctx, batch)
            finally:
                self.seconds += time.perf_counter() - start

        llama_cpp.llama_decode = bindings.llama_decode = timed


def direct(llm, prompts: list[list[int]], max_tokens: int, reuse_prefix: bool) -> float:
    """`Llama.generate` one request at a time. It skips the part of a prompt that the previous
    one shared (the chat template's system prompt here) unless `reset()` comes first: that
    reuse is only like for like against the engine's `prefix_cache` (off by default)."""
    tokens, start = 0, time.perf_counter()
    for ids in prompts:
        if not reuse_prefix:
            llm.reset()
        for n, _ in enumerate(llm.generate(ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0), 1):
            if n == max_tokens:
                break
        tokens += max_tokens
    return tokens / (time.perf_counter() - start)


async def one(engine, ids: list[int], max_tokens: int) -> int:
    from dynamo.llm import Context

    request = {
        "token_ids": ids,
        "stop_conditions": {"max_tokens": max_tokens, "ignore_eos": True},
        "sampling_options": {"temperature": 0.0},
        "eos_token_ids": [],
    }
    return sum([len(o["token_ids"]) async for o in engine.generate(request, Context())])


async def engine_sequential(engine, prompts: list[list[int]], max_tokens: int) -> float:
    start = time.perf_counter()
    tokens = [await one(engine, ids, max_tokens) for ids in prompts]
    return sum(tokens) / (time.perf_counter() - start)


async def engine_concurrent(engine, prompts: list[list[int]], max_tokens: int) -> float:
    start = time.perf_counter()
    tokens = await asyncio.gather(*(one(engine, ids, max_tokens) for ids in prompts))
    return sum(tokens) / (time.perf_counter() - start)


async def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-path", default=None)
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--n-ctx", type=int, default=1024)
    p.add_argument("--threads", type=int, default=None, help="default: out=llamacpp's")
    p.add_argument(
        "--prefix-cache",
        action="store_true",
        help="the engine's prefix_cache on, and Llama.generate reusing the previous prompt's "
        "prefix (default: neither side reuses a prefix)",
    )
    args = p.parse_args()

    from llama_cpp import Llama

    from dynamo.engines.llamacpp import LlamaCppEngine, default_threads
    from dynamo.llm import EngineConfig
    from dynamo.llm.model_card import load_card

    model_path = args.model_path or default_model()
    prompts = prompt_ids(model_path, args.streams)
    singles = prompts[: len(PROMPTS)]
    threads = args.threads or default_threads()
    llm = Llama(
        model_path=model_path,
        n_ctx=args.n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        flash_attn=True,
        verbose=False,
    )
    config = EngineConfig(
        "bench",
        card=load_card(model_path),
        model_path=model_path,
        context_length=args.n_ctx,
        extra_engine_args={
            "n_parallel": args.streams,
            "prefix_cache": args.prefix_cache,
            **({"n_threads": threads, "n_threads_batch": threads} if threads else {}),
        },
    )
    engine = await LlamaCppEngine.start(config)
    rates: dict[str, list[float]] = {"direct": [], "engine_1": [], f"engine_{args.streams}": []}
    # Per token of the one-stream sides: (seconds inside llama_decode, seconds outside it).
    split: dict[str, list[tuple[float, float]]] = {"direct": [], "engine_1": []}
    # The same for the N-stream side, per token of all N: the decode thread's work per step
    # (batch building, N samplings, the hand-off) spread over the step's N tokens.
    split_n: list[tuple[float, float]] = []
    clock = DecodeClock()
    clock.install()
    tokens_1 = len(singles) * args.max_tokens

    def clocked(side: str, rate: float, decode_before: float) -> float:
        decode = (clock.seconds - decode_before) / tokens_1
        split[side].append((decode, 1 / rate - decode))
        return rate

    try:
        await one(engine, prompts[0], 8)  # warm-up
        for _ in range(args.rounds):
            before = clock.seconds
            rate = direct(llm, singles, args.max_tokens, args.prefix_cache)
            rates["direct"].append(clocked("direct", rate, before))
            before = clock.seconds
            rate = await engine_sequential(engine, singles, args.max_tokens)
            rates["engine_1"].append(clocked("engine_1", rate, before))
            before = clock.seconds
            rate = await engine_concurrent(engine, prompts, args.max_tokens)
            rates[f"engine_{args.streams}"].append(rate)
            decode_n = (clock.seconds - before) / (len(prompts) * args.max_tokens)
            split_n.append((decode_n, 1 / rate - decode_n))
    finally:
        await engine.close()
        llm.close()
    median = {k: statistics.median(v) for k, v in rates.items()}
    decode = statistics.median(d for d, _ in split["direct"])
    overhead = {k: statistics.median(o for _, o in v) for k, v in split.items()}
    print(
        json.dumps(
            {
                "streams": args.streams,
                "max_tokens": args.max_tokens,
                "rounds": args.rounds,
                "threads": threads,
                "prefix_cache": args.prefix_cache,
                **{f"{k}_tok_s": round(v, 1) for k, v in median.items()},
                "engine_1_vs_direct": round(median["engine_1"] / median["direct"], 3),
                "decode_ms_per_token": round(decode * 1e3, 2),
                **{f"{k}_overhead_ms_per_token": round(v * 1e3, 3) for k, v in overhead.items()},
                "engine_1_vs_direct_at_equal_decode": round(
                    (decode + overhead["direct"]) / (decode + overhead["engine_1"]), 3
                ),
                f"engine_{args.streams}_decode_ms_per_token": round(
                    statistics.median(d for d, _ in split_n) * 1e3, 2
                ),
                f"engine_{args.streams}_overhead_ms_per_token": round(
                    statistics.median(o for _, o in split_n) * 1e3, 3
                ),
                "load_1min": round(os.getloadavg()[0], 1),
                f"engine_{args.streams}_vs_engine_1": round(
                    median[f"engine_{args.streams}"] / median["engine_1"], 2
                ),
                "each": {k: [round(x, 1) for x in v] for k, v in rates.items()},
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
