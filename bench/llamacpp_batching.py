"""Continuous batching in `out=llamacpp`: aggregate tokens/s at N concurrent streams vs one.

Three measurements per round, in one process, on the same chat prompts (greedy, EOS ignored,
the same thread count and flash attention on every side):

- direct: llama-cpp-python's own `Llama.generate`, one request at a time;
- engine x1: `LlamaCppEngine` (the engine `dynamo-run out=llamacpp` serves), one request at a time;
- engine xN: the same engine with N requests in flight at once (N = --streams, also its slots).

Rates are generated tokens over wall time. Rounds alternate the three so they see the same load.

    uv run python bench/llamacpp_batching.py --streams 8 --max-tokens 64 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


def direct(llm, prompts: list[list[int]], max_tokens: int) -> float:
    tokens, start = 0, time.perf_counter()
    for ids in prompts:
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
            **({"n_threads": threads, "n_threads_batch": threads} if threads else {}),
        },
    )
    engine = await LlamaCppEngine.start(config)
    rates: dict[str, list[float]] = {"direct": [], "engine_1": [], f"engine_{args.streams}": []}
    try:
        await one(engine, prompts[0], 8)  # warm-up
        for _ in range(args.rounds):
            rates["direct"].append(direct(llm, singles, args.max_tokens))
            rates["engine_1"].append(await engine_sequential(engine, singles, args.max_tokens))
            rates[f"engine_{args.streams}"].append(
                await engine_concurrent(engine, prompts, args.max_tokens)
            )
    finally:
        await engine.close()
        llm.close()
    median = {k: statistics.median(v) for k, v in rates.items()}
    print(
        json.dumps(
            {
                "streams": args.streams,
                "max_tokens": args.max_tokens,
                "rounds": args.rounds,
                "threads": threads,
                **{f"{k}_tok_s": round(v, 1) for k, v in median.items()},
                "engine_1_vs_direct": round(median["engine_1"] / median["direct"], 3),
                f"engine_{args.streams}_vs_engine_1": round(
                    median[f"engine_{args.streams}"] / median["engine_1"], 2
                ),
                "each": {k: [round(x, 1) for x in v] for k, v in rates.items()},
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
