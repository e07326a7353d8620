"""`in=batch:FILE.jsonl`: answer every `{"text": ...}` line, writing `output.jsonl` beside it.

Lines run concurrently (bounded by `--batch-concurrency`), results are written and flushed as
each finishes so an interrupted run keeps what it did, and a bad line is reported with its line
number while the others still run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson
from tqdm import tqdm

from dynamo.frontend.inputs.common import InputError, chat_turn
from dynamo.llm.errors import RequestError
from dynamo.llm.pipeline import ServedModel
from dynamo.runtime.context import Context

log = logging.getLogger(__name__)


class BatchFileError(InputError):
    """The batch file itself cannot be used (missing, unreadable)."""


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


async def _one(model: ServedModel, text: str) -> dict[str, Any]:
    start = time.perf_counter()
    context = Context()
    parts: list[str] = []
    finish = None
    chunks = 0
    async for delta in chat_turn(model, [{"role": "user", "content": text}], context):
        parts.append(delta.text)
        chunks = delta.completion_tokens or chunks + (1 if delta.text else 0)
        finish = delta.finish_reason or finish
    response = "".join(parts)
    # Like upstream: count by re-tokenizing the raw text and response, without the template.
    tokens_in = model.count_tokens(text) or len(text.split())
    tokens_out = model.count_tokens(response) if response else 0
    return {
        "text": text,
        "response": response,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out or chunks,
        "elapsed_ms": int((time.perf_counter() - start) * 1000),
        "finish_reason": finish,
    }


async def run_batch(model: ServedModel, file: str, concurrency: int) -> BatchStats:
    path = Path(file)
    prompts, bad = read_prompts(path)
    out_path = path.parent / "output.jsonl"
    stats = BatchStats(prompts=0, failed=bad)
    start = time.perf_counter()
    semaphore = asyncio.Semaphore(max(1, concurrency))
    with out_path.open("wb") as out, tqdm(total=len(prompts), unit="prompt", desc="batch") as bar:

        async def run(number: int, text: str) -> None:
            async with semaphore:
                try:
                    record = await _one(model, text)
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
    return stats


def _write(out: Any, record: dict[str, Any]) -> None:
    fh: TextIO = out
    fh.write(orjson.dumps(record) + b"\n")
    fh.flush()
