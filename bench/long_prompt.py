"""Time to first token of one long prompt at a time, cold and then cached, on one mocker worker.

No concurrency and no routing choice (one worker): what is left is the per-request cost of the
serving path (templating, tokenizing, the request plane, the engine's prefix lookup) plus the
mocker's simulated prefill. Each of `--documents` documents of `--words` words is sent twice in
a row: the first TTFT is a cold prefill, the second a fully cached one. With `--speedup 1000`
the simulated prefill all but vanishes and the serving path's own cost remains. Ours runs split
(`in=http out=dyn` + `out=mocker`, etcd and NATS); `--upstream PYTHON` adds upstream's frontend
and mocker (bench/upstream.py) on the same prompts.

    uv run python bench/long_prompt.py --words 2000 --speedup 1
    uv run python bench/long_prompt.py --words 2000 --speedup 1000 --upstream /path/to/venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import urllib.request

from _common import default_model, split_stack


def ttft_ms(url: str, model: str, messages: list[dict]) -> float:
    """Milliseconds from sending a streaming chat request to its first content chunk."""
    body = {"model": model, "stream": True, "max_tokens": 2, "ignore_eos": True}
    body["messages"] = messages
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as resp:
        for line in resp:
            if line.startswith(b"data: {") and b'"content"' in line:
                elapsed = (time.perf_counter() - start) * 1000
                resp.read()
                return elapsed
    return float("nan")


def probe(url: str, model: str, args: argparse.Namespace) -> dict:
    """Median cold and cached TTFT over the documents (the same documents on every side)."""
    rng = random.Random(args.seed)
    cold, cached = [], []
    for d in range(args.documents):
        words = (f"{rng.choice(['alpha', 'beta'])}{rng.randint(0, 999)}" for _ in range(args.words))
        document = f"Document {d}. " + " ".join(words)
        messages = [{"role": "system", "content": document}, {"role": "user", "content": "Why?"}]
        cold.append(ttft_ms(url, model, messages))
        cached.append(ttft_ms(url, model, messages))
    return {
        "words": args.words,
        "speedup": args.speedup,
        "ttft_cold_p50_ms": round(statistics.median(cold), 1),
        "ttft_cached_p50_ms": round(statistics.median(cached), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--words", type=int, default=2000, help="words per document (~4 tokens each)")
    p.add_argument("--documents", type=int, default=6)
    p.add_argument("--speedup", type=float, default=1.0, help="mocker speedup_ratio")
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--model-path", default=None)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--upstream", metavar="PYTHON", help="also run upstream ai-dynamo 1.6.1")
    args = p.parse_args()
    model_path = args.model_path or default_model()

    engine_args = {"speedup_ratio": args.speedup, "block_size": args.block_size}
    with split_stack("mocker", model_path, model_name="mock", extra_engine_args=engine_args) as (
        url,
        _,
    ):
        print(json.dumps({"server": "ours-split", **probe(url, "mock", args)}), flush=True)
    if args.upstream:
        import upstream

        with upstream.upstream_stack(
            args.upstream,
            model_path=model_path,
            model_name="mock",
            speedup_ratio=args.speedup,
            block_size=args.block_size,
        ) as stack:
            result = probe(stack.url, stack.model, args)
            print(json.dumps({"server": f"upstream-{stack.version}", **result}), flush=True)


if __name__ == "__main__":
    main()
