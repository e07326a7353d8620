"""Serving overhead of an engine: tokens/s through `dynamo-run in=http` vs the library called directly.

Both sides decode the same prompts greedily for the same number of tokens (EOS ignored), one
request at a time, in one run, with the same thread settings. Direct runs in this process;
then `dynamo-run in=http out=<engine>` is started and driven over HTTP with streaming. The ratio
(served / direct) is the share of the engine's speed that survives the serving stack.

    uv run python bench/engine_overhead.py --engine llamacpp --max-tokens 128 --rounds 3
    uv run python bench/engine_overhead.py --engine mistralrs --max-tokens 32 --rounds 2
    $VLLM_VENV/bin/python bench/engine_overhead.py --engine vllm --model-path HF_FOLDER \
        --max-tokens 64 --rounds 6 --streams 1 8

vLLM batches concurrent requests, so `--engine vllm` measures each `--streams` level on both
sides, both engines up at once and the rounds interleaved (bench/_vllm.py); it needs the vLLM
venv and an HF folder (packages/engine-vllm/scripts). Its ratio is the median of the rounds'
paired ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time

import httpx
from _common import (
    PROMPTS,
    default_model,
    mistralrs_chat,
    mistralrs_runner,
    start_dynamo_run,
    stop,
)


def chat_prompt_ids(model_path: str, text: str) -> list[int]:
    from dynamo.llm.chat_template import PromptFormatter
    from dynamo.llm.model_card import load_card

    card = load_card(model_path)
    prompt = PromptFormatter(card).render([{"role": "user", "content": text}])
    return card.tokenizer().encode(prompt, add_special_tokens=False).ids


def direct_llamacpp(
    model_path: str, prompts: list[list[int]], max_tokens: int, n_ctx: int
) -> float:
    """Tokens per second of llama-cpp-python's own generate loop on the same prompts."""
    from llama_cpp import Llama

    from dynamo.engines.llamacpp import default_threads

    # The settings `out=llamacpp` uses (n_threads above all, flash attention), so the ratio
    # measures the serving stack, not a different thread count or attention kernel.
    threads = default_threads()
    llm = Llama(
        model_path=model_path,
        n_ctx=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        flash_attn=True,
        verbose=False,
    )
    tokens, elapsed = 0, 0.0
    for ids in prompts:
        start = time.perf_counter()
        for n, _ in enumerate(llm.generate(ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0), start=1):
            if n == max_tokens:
                break
        elapsed += time.perf_counter() - start
        tokens += max_tokens
    llm.close()
    return tokens / elapsed


def direct_mistralrs(model_path: str, texts: list[str], max_tokens: int, n_ctx: int) -> float:
    """Tokens per second of mistral.rs's own streaming chat API on the same prompts."""
    runner = mistralrs_runner(model_path)
    tokens, elapsed = 0, 0.0
    for text in texts:
        request = mistralrs_chat(text, max_tokens)
        start = time.perf_counter()
        usage = None
        for chunk in runner.send_chat_completion_request(request):
            usage = chunk.usage or usage
        elapsed += time.perf_counter() - start
        tokens += usage.completion_tokens if usage else max_tokens
    return tokens / elapsed


def served(url: str, texts: list[str], max_tokens: int) -> float:
    """Tokens per second streamed through the HTTP server, counted from the usage chunk."""
    tokens, elapsed = 0, 0.0
    with httpx.Client(timeout=600) as client:
        for text in texts:
            body = {
                "model": "bench",
                "stream": True,
                "temperature": 0,
                "max_tokens": max_tokens,
                "ignore_eos": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": text}],
            }
            start = time.perf_counter()
            usage = None
            with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
                for line in r.iter_lines():
                    if line.startswith("data: {"):
                        chunk = json.loads(line[6:])
                        usage = chunk.get("usage") or usage
            elapsed += time.perf_counter() - start
            tokens += usage["completion_tokens"]
    return tokens / elapsed


def start_server(engine: str, model_path: str, n_ctx: int) -> tuple[subprocess.Popen, str]:
    """`dynamo-run in=http out=ENGINE` with the context length the direct side uses."""
    ctx = ["--context-length", str(n_ctx)] if engine == "llamacpp" else []
    return start_dynamo_run(
        engine, model_path, ctx, env={"HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL
    )


def run_vllm(args: argparse.Namespace) -> None:
    """Both sides up at once, measured interleaved at each --streams level (bench/_vllm.py)."""
    import asyncio
    import os

    import _vllm

    model_path = args.model_path
    if model_path is None:
        raise SystemExit("--engine vllm needs --model-path HF_FOLDER (vLLM reads no GGUF)")
    prompt_ids = [chat_prompt_ids(model_path, t) for t in PROMPTS]
    load_before = os.getloadavg()
    proc, url = start_dynamo_run(
        "vllm", model_path, _vllm.server_args(args.n_ctx), env={"HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL, timeout=900,
    )  # fmt: skip
    try:
        results = asyncio.run(
            _vllm.compare(
                model_path, url, prompt_ids, PROMPTS, args.max_tokens, args.n_ctx,
                args.streams, args.rounds,
            )
        )  # fmt: skip
    finally:
        stop([proc], grace=60)
    print(
        json.dumps(
            {
                "engine": "vllm",
                "max_tokens": args.max_tokens,
                "rounds": args.rounds,
                "cpus": os.cpu_count(),
                "loadavg_1m_before_after": [round(load_before[0], 1), round(os.getloadavg()[0], 1)],
                **{f"streams_{s}": r for s, r in results.items()},
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--engine", default="llamacpp", choices=["llamacpp", "mistralrs", "vllm"])
    p.add_argument("--model-path", default=None)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3, help="alternating direct/served rounds")
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument(
        "--streams", type=int, nargs="+", default=[1, 8], help="concurrency levels (vllm only)"
    )
    args = p.parse_args()
    if args.engine == "vllm":
        run_vllm(args)
        return
    model_path = args.model_path or default_model()
    prompt_ids = [chat_prompt_ids(model_path, t) for t in PROMPTS]

    proc, url = start_server(args.engine, model_path, args.n_ctx)
    direct_rates, served_rates = [], []
    try:
        served(url, PROMPTS[:1], 8)  # warm-up
        for _ in range(args.rounds):
            # The server idles while direct runs, and the other way round: one core each is free.
            if args.engine == "llamacpp":
                direct_rates.append(
                    direct_llamacpp(model_path, prompt_ids, args.max_tokens, args.n_ctx)
                )
            else:
                direct_rates.append(
                    direct_mistralrs(model_path, PROMPTS, args.max_tokens, args.n_ctx)
                )
            served_rates.append(served(url, PROMPTS, args.max_tokens))
    finally:
        stop([proc], grace=30)
    direct = statistics.median(direct_rates)
    serve = statistics.median(served_rates)
    print(
        json.dumps(
            {
                "engine": args.engine,
                "max_tokens": args.max_tokens,
                "prompts": len(PROMPTS),
                "rounds": args.rounds,
                "direct_tok_s": round(direct, 1),
                "served_tok_s": round(serve, 1),
                "ratio": round(serve / direct, 3),
                "direct_each": [round(x, 1) for x in direct_rates],
                "served_each": [round(x, 1) for x in served_rates],
            }
        )
    )


if __name__ == "__main__":
    main()
