"""llama.cpp vs mistral.rs, each called directly through its own Python API, on the same prompts.

No serving stack: this is the engines' own speed, the input to the default-engine rule
(docs/decisions.md). Per request it records time to first token (prefill plus one decode step)
and the decode rate after the first token; per engine, the medians and the end-to-end output
tokens/s. Greedy, EOS ignored, one request at a time; the engines alternate request by request so
both see the same machine load. llama.cpp gets the thread count `out=llamacpp` gives it (the
usable physical cores; `--llama-threads` overrides it); mistral.rs its own default (every core).
Prefix caching is on in both, as they ship.

    uv run python bench/engines_direct.py --max-tokens 64 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator

from _common import PROMPTS, default_model, mistralrs_chat, mistralrs_runner

# One request: prompt text -> an iterator that yields once per generated token (or chunk).
Stream = Callable[[str], Iterator[int]]


def llamacpp_stream(model_path: str, max_tokens: int, n_ctx: int, threads: int | None) -> Stream:
    """Greedy `Llama.generate` on the chat-templated prompt's token ids (as the engine runs it)."""
    from llama_cpp import Llama

    from dynamo.llm.chat_template import PromptFormatter
    from dynamo.llm.model_card import load_card

    card = load_card(model_path)
    formatter, tokenizer = PromptFormatter(card), card.tokenizer()
    extra = {"n_threads": threads} if threads else {}
    llm = Llama(model_path=model_path, n_ctx=n_ctx, verbose=False, **extra)

    def run(text: str) -> Iterator[int]:
        prompt = formatter.render([{"role": "user", "content": text}])
        ids = tokenizer.encode(prompt, add_special_tokens=False).ids
        tokens = llm.generate(ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0)
        for n, token in enumerate(tokens, start=1):
            yield token
            if n == max_tokens:
                return

    return run


def mistralrs_stream(model_path: str, max_tokens: int) -> Stream:
    """Greedy streaming chat through `mistralrs.Runner` (mistral.rs templates the prompt itself)."""
    runner = mistralrs_runner(model_path)

    def run(text: str) -> Iterator[int]:
        request = mistralrs_chat(text, max_tokens)
        for chunk in runner.send_chat_completion_request(request):
            if chunk.choices and chunk.choices[0].delta.content:
                yield 1

    return run


def measure(stream: Stream, text: str) -> dict[str, float]:
    start = time.perf_counter()
    first = None
    count = 0
    for _ in stream(text):
        count += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    assert first is not None, "no token generated"
    return {
        "ttft_s": first - start,
        "decode_tok_s": (count - 1) / (end - first) if count > 1 and end > first else 0.0,
        "tokens": count,
        "total_s": end - start,
    }


def summary(samples: list[dict[str, float]]) -> dict[str, float]:
    tokens = sum(s["tokens"] for s in samples)
    return {
        "requests": len(samples),
        "output_tok_s": round(tokens / sum(s["total_s"] for s in samples), 2),
        "decode_tok_s_p50": round(statistics.median(s["decode_tok_s"] for s in samples), 2),
        "ttft_ms_p50": round(1000 * statistics.median(s["ttft_s"] for s in samples), 1),
        "ttft_ms_max": round(1000 * max(s["ttft_s"] for s in samples), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-path", default=None)
    p.add_argument("--engines", default="llamacpp,mistralrs")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2, help="passes over the prompts")
    p.add_argument("--n-ctx", type=int, default=2048, help="llama.cpp's n_ctx")
    p.add_argument("--llama-threads", type=int, default=None, help="llama.cpp's n_threads")
    args = p.parse_args()
    model_path = args.model_path or default_model()
    if args.llama_threads is None:
        from dynamo.engines.llamacpp._options import default_threads

        args.llama_threads = default_threads()

    streams: dict[str, Stream] = {}
    for name in args.engines.split(","):
        if name == "llamacpp":
            streams[name] = llamacpp_stream(
                model_path, args.max_tokens, args.n_ctx, args.llama_threads
            )
        elif name == "mistralrs":
            streams[name] = mistralrs_stream(model_path, args.max_tokens)
        else:
            sys.exit(f"unknown engine {name!r}")
    for stream in streams.values():
        measure(stream, "Hello")  # warm-up: first-call allocations, thread pools

    samples: dict[str, list[dict[str, float]]] = {name: [] for name in streams}
    for _ in range(args.rounds):
        for text in PROMPTS:
            for name, stream in streams.items():
                samples[name].append(measure(stream, text))
    for name, got in samples.items():
        print(
            json.dumps(
                {
                    "engine": name,
                    "max_tokens": args.max_tokens,
                    "llama_threads": args.llama_threads,
                    **summary(got),
                }
            )
        )


if __name__ == "__main__":
    main()
