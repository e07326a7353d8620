"""`in=batch:FILE.jsonl`: answer every `{"text": ...}` line, writing `output.jsonl` beside it.

Lines run concurrently (bounded by `--batch-concurrency`), results are written and flushed as
each finishes so an interrupted run keeps what it did; each result says its input `line`, since
they finish out of order. A bad line is reported with its line number while the others still
run, and the run then exits non-zero. Nothing is written over: when `output.jsonl` exists (or is
the input: a previous run's output is valid input) the results go to `output.1.jsonl`, and so on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from tqdm import tqdm

from dynamo.frontend.inputs import InputError
from dynamo.frontend.inputs.common import chat_turn
from dynamo.llm.errors import RequestError
from dynamo.llm.pipeline import ServedModel
from dynamo.runtime.context import Context

log = logging.getLogger(__name__)


class BatchFileError(InputError):
    """The batch file itself cannot be used (missing, unreadable)."""


class BatchFailedError(InputError):
    """Some lines failed: the run's exit code must say so, not only its log."""


@dataclass
class BatchStats:
    prompts: int = 0
    failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0

    def summary(self, seconds: float) -> str:
        s = max(seconds, 1e-9)
        line = (
            f"Ran {self.prompts} prompts in {seconds:.2f}s. "
            f"Tokens in: {self.tokens_in} ({self.tokens_in / s:.1f}/s). "
            f"Tokens out: {self.tokens_out} ({self.tokens_out / s:.1f}/s)"
        )
        return line + (f". Failed: {self.failed}" if self.failed else "")


def read_prompts(path: Path) -> tuple[list[tuple[int, str]], int]:
    """(line number, text) for each usable line, and how many lines were rejected."""
    try:
        raw_lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise BatchFileError(f"cannot read batch file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise BatchFileError(f"batch file {path} is not UTF-8 text") from None
    prompts, bad = [], 0
    for number, line in enumerate(raw_lines, start=1):
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
            text = entry["text"]
            if not isinstance(text, str):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.error('%s line %d: expected {"text": "..."}, skipping it', path.name, number)
            bad += 1
            continue
        prompts.append((number, text))
    return prompts, bad


def output_path(input_path: Path) -> Path:
    """`output.jsonl` beside the input, or the first free `output.N.jsonl` when that exists."""
    candidate = input_path.parent / "output.jsonl"
    number = 0
    while candidate.exists():
        number += 1
        candidate = input_path.parent / f"output.{number}.jsonl"
    return candidate


async def _one(model: ServedModel, number: int, text: str, ignore_eos: bool) -> dict[str, Any]:
    start = time.perf_counter()
    context = Context()
    parts: list[str] = []
    finish = None
    chunks = 0
    messages = [{"role": "user", "content": text}]
    async for delta in chat_turn(model, messages, context, ignore_eos=ignore_eos):
        parts.append(delta.text)
        chunks = delta.completion_tokens or chunks + (1 if delta.text else 0)
        finish = delta.finish_reason or finish
    response = "".join(parts)
    # Like upstream: count by re-tokenizing the raw text and response, without the template.
    tokens_in = model.count_tokens(text) or len(text.split())
    tokens_out = model.count_tokens(response) if response else 0
    return {
        "line": number,
        "text": text,
        "response": response,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out or chunks,
        "elapsed_ms": int((time.perf_counter() - start) * 1000),
        "finish_reason": finish,
    }


async def run_batch(
    model: ServedModel, file: str, concurrency: int, *, ignore_eos: bool = False
) -> BatchStats:
    """Run every line; raises `BatchFailedError` after the run when any line failed."""
    path = Path(file)
    prompts, bad = read_prompts(path)
    out_path = output_path(path)
    if out_path.name != "output.jsonl":
        log.warning("%s exists: writing %s instead", out_path.with_name("output.jsonl"), out_path)
    stats = BatchStats(prompts=0, failed=bad)
    start = time.perf_counter()
    semaphore = asyncio.Semaphore(max(1, concurrency))
    # "x": created here, never an existing file (another run may have taken the name since).
    with out_path.open("xb") as out, tqdm(total=len(prompts), unit="prompt", desc="batch") as bar:

        async def run(number: int, text: str) -> None:
            async with semaphore:
                try:
                    record = await _one(model, number, text, ignore_eos)
                except RequestError as e:
                    log.error("%s line %d: %s", path.name, number, e.message)
                    stats.failed += 1
                else:
                    _write(out, record)
                    stats.prompts += 1
                    stats.tokens_in += record["tokens_in"]
                    stats.tokens_out += record["tokens_out"]
                bar.update(1)

        await asyncio.gather(*(run(n, t) for n, t in prompts))
    log.info("%s", stats.summary(time.perf_counter() - start))
    log.info("wrote %s", out_path)
    if stats.failed:
        total = stats.failed + stats.prompts
        raise BatchFailedError(
            f"{stats.failed} of {total} lines of {path.name} failed (see above); "
            f"the others are in {out_path}"
        )
    return stats


def _write(out: BinaryIO, record: dict[str, Any]) -> None:
    out.write(orjson.dumps(record) + b"\n")
    out.flush()
