"""The mocker engine alone, in process: its CPU per token, and whether its steps keep the pace of
the timing model.

No frontend, request plane or client: `--concurrency` streams call `MockerEngine.generate`
directly until `--requests` requests of `--max-tokens` tokens are done. Prints one JSON line:

- `cpu_us_per_token`: this process's CPU time over the tokens streamed (at `--speedup 0` the
  mocker does not sleep, so this is the engine's own work per token: scheduler, KV cache and
  `generate()`);
- `wall_over_modeled`: the wall time over the sum of the modeled step times (`step_ms` divided
  by the speedup): 1.0 is upstream's pace; above it, the step loop loses time each step.

    uv run python bench/mocker_engine.py --speedup 0      # CPU per token
    uv run python bench/mocker_engine.py --speedup 1 --requests 128   # pace
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from dynamo.engines.mocker import MockerEngine
from dynamo.engines.mocker._scheduler import Step
from dynamo.llm import Context, EngineConfig


async def run(args: argparse.Namespace) -> dict:
    engine = await MockerEngine.start(
        EngineConfig(model_name="bench", extra_engine_args={"speedup_ratio": args.speedup})
    )
    modeled_ms = 0.0
    steps = 0
    step_ms = engine.scheduler.step_ms

    def counted(step: Step) -> float:
        nonlocal modeled_ms, steps
        ms = step_ms(step)
        modeled_ms += ms
        steps += 1
        return ms

    engine.scheduler.step_ms = counted  # type: ignore[method-assign]
    prompt = list(range(1000, 1000 + args.prompt_tokens))
    semaphore = asyncio.Semaphore(args.concurrency)
    tokens = 0

    async def one(i: int) -> None:
        nonlocal tokens
        request = {
            "token_ids": [i, *prompt],  # distinct first token: no prefix shared across requests
            "stop_conditions": {"max_tokens": args.max_tokens},
            "eos_token_ids": [],
        }
        async with semaphore:
            async for chunk in engine.generate(request, Context()):
                tokens += len(chunk["token_ids"])

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(args.requests)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await engine.close()
    report = {
        "speedup": args.speedup,
        "concurrency": args.concurrency,
        "requests": args.requests,
        "tokens": tokens,
        "cpu_us_per_token": round(cpu / tokens * 1e6, 1),
        "wall_s": round(wall, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if 0 < args.speedup < float("inf"):
        modeled_s = modeled_ms / args.speedup / 1000.0
        report["steps"] = steps
        report["modeled_s"] = round(modeled_s, 3)
        report["wall_over_modeled"] = round(wall / modeled_s, 3)
    return report


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--speedup", type=float, default=0.0, help="the mocker's speedup_ratio")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--requests", type=int, default=512)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--prompt-tokens", type=int, default=200)
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    for _ in range(args.rounds):
        print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
