"""One `llama_decode` step of N decoding sequences against one: what batching can buy at most.

`bench/llamacpp_batching.py` measures the engine end to end; this measures the matrix work under
it, with nothing of ours in the loop: a context with N sequences (a KV stream each, flash
attention on, as `out=llamacpp` makes it), each given a prompt, then steps of one token for one
sequence against steps of one token for each of N sequences (every row's logits computed, as the
engine asks). `gain` is N x (time of a 1-token step) / (time of an N-token step): the most that
N streams can give over one in aggregate tokens/s, before any overhead of our own.

Each model file and thread setting is measured in every round, 1-token and N-token steps
alternating, so all of them see the same load. Both wall time and the process's CPU time are
reported: CPU time with one thread does not depend on how busy the shared machine is (with two,
ggml's threads spin while they wait for each other, and a preempted thread makes the other spin).

`--requantize` writes the default model (SmolLM2, Q4_1) requantized to other ggml types into a
scratch folder and measures those too: ggml's batched matmul kernels (llamafile's tinyBLAS and
the CPU "repack" buffer types) cover Q4_0, Q8_0 and F16 on AVX2, not Q4_1.

    uv run python bench/llamacpp_step.py --requantize q4_0,q8_0,f16 --threads 1,2,1:2
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import llama_cpp
from _common import default_model

from dynamo.engines.llamacpp import EngineSettings
from dynamo.engines.llamacpp._native import NativeModel

#: `--requantize` names -> llama.cpp's file types.
FTYPES = {
    "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
    "q4_1": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_1,
    "q5_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_0,
    "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
    "f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16,
    "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
}
PROMPT_TOKENS = 40


def requantize(source: str, names: list[str], folder: Path) -> list[str]:
    """`source` written as each of `names` into `folder` (llama.cpp's own quantizer)."""
    out = []
    for name in names:
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = FTYPES[name]
        params.allow_requantize = True
        target = folder / f"{Path(source).stem}.as-{name}.gguf"
        if (
            llama_cpp.llama_model_quantize(
                source.encode(), str(target).encode(), ctypes.pointer(params)
            )
            != 0
        ):
            raise SystemExit(f"llama.cpp could not requantize {source} to {name}")
        out.append(str(target))
    return out


class Stepper:
    """A model and a context of `n` sequences, each holding a `PROMPT_TOKENS`-token prompt."""

    def __init__(self, path: str, n: int, threads: int, threads_batch: int, n_ctx: int):
        self.n = n
        # The engine's own loader: the context exactly as out=llamacpp makes it.
        self.native = NativeModel.load(
            Path(path),
            EngineSettings(
                n_ctx=n_ctx,
                n_parallel=n,
                n_batch=512,
                context_params={"n_threads": threads, "n_threads_batch": threads_batch},
            ),
        )
        self.ctx: Any = self.native.ctx
        self.batch: Any = self.native.batch
        self._decode([(seq, 0, PROMPT_TOKENS) for seq in range(n)])

    def _decode(self, items: list[tuple[int, int, int]]) -> None:
        """Decode (sequence, first position, tokens) chunks in one batch, logits of each last."""
        b, i = self.batch, 0
        for seq, pos, count in items:
            for k in range(count):
                b.token[i] = 100 + (k * 7 + seq * 13) % 1000
                b.pos[i], b.n_seq_id[i], b.logits[i] = pos + k, 1, k == count - 1
                b.seq_id[i][0] = seq
                i += 1
        b.n_tokens = i
        if llama_cpp.llama_decode(self.ctx, b) != 0:
            raise SystemExit("llama_decode failed")

    def steps(self, width: int, count: int) -> tuple[float, float]:
        """Milliseconds of wall and of process CPU time per step of one token for each of the
        first `width` sequences, over `count` steps; the cache is then as it was."""
        wall, cpu = time.perf_counter(), time.process_time()
        for k in range(count):
            self._decode([(seq, PROMPT_TOKENS + k, 1) for seq in range(width)])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        for seq in range(width):
            self.native.clear_seq(seq, PROMPT_TOKENS)
        return wall / count * 1e3, cpu / count * 1e3

    def close(self) -> None:
        self.native.close()


def thread_setting(text: str) -> tuple[int, int]:
    """ "2" -> (2, 2); "1:2" -> n_threads 1 (one-token steps), n_threads_batch 2 (the rest)."""
    first, _, second = text.partition(":")
    return int(first), int(second or first)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-path", action="append", default=[], help="repeatable")
    p.add_argument("--requantize", default="", help=f"comma-separated, of {', '.join(FTYPES)}")
    p.add_argument("--threads", default="2", help='comma-separated: "2", "1", "1:2" ...')
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n-ctx", type=int, default=1024)
    args = p.parse_args()

    from llama_cpp import _logger

    _logger.set_verbose(False)
    llama_cpp.llama_backend_init()
    paths = args.model_path or [default_model()]
    names = [n.strip().lower() for n in args.requantize.split(",") if n.strip()]
    with tempfile.TemporaryDirectory(prefix="llamacpp-step-") as scratch:
        paths += requantize(paths[0], names, Path(scratch)) if names else []
        setups = {
            (Path(path).name, t): Stepper(path, args.streams, *thread_setting(t), args.n_ctx)
            for path in paths
            for t in args.threads.split(",")
        }
        times: dict[tuple[str, str], dict[int, list[tuple[float, float]]]] = {
            key: {1: [], args.streams: []} for key in setups
        }
        loads = [os.getloadavg()[0]]
        for stepper in setups.values():  # warm-up
            stepper.steps(1, 2)
            stepper.steps(args.streams, 2)
        for _ in range(args.rounds):
            for key, stepper in setups.items():
                for width in (1, args.streams):
                    times[key][width].append(stepper.steps(width, args.steps))
            loads.append(os.getloadavg()[0])
        for stepper in setups.values():
            stepper.close()
    n = args.streams
    for (model, threads), by_width in times.items():
        wall = {w: statistics.median(t[0] for t in v) for w, v in by_width.items()}
        cpu = {w: statistics.median(t[1] for t in v) for w, v in by_width.items()}
        print(
            json.dumps(
                {
                    "model": model,
                    "threads": threads,
                    "step_1_ms": round(wall[1], 2),
                    f"step_{n}_ms": round(wall[n], 2),
                    f"gain_{n}_wall": round(n * wall[1] / wall[n], 2),
                    "cpu_1_ms": round(cpu[1], 2),
                    f"cpu_{n}_ms": round(cpu[n], 2),
                    f"gain_{n}_cpu": round(n * cpu[1] / cpu[n], 2),
                    "tok_s_1": round(1e3 / wall[1], 1),
                    f"tok_s_{n}": round(n * 1e3 / wall[n], 1),
                }
            )
        )
    print(json.dumps({"load_1min": [round(x, 1) for x in loads]}))


if __name__ == "__main__":
    main()
