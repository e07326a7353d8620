"""Pieces of the `LLMEngineOutput` deltas that every library engine builds the same way."""

from __future__ import annotations

from typing import Any


def completion_usage(
    prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None
) -> dict[str, Any]:
    """`completion_usage` for a last delta; `cached_tokens`: the engine's prefix-cache hits."""
    out: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        out["prompt_tokens_details"] = {"cached_tokens": int(cached_tokens)}
    return out


__all__ = ["completion_usage"]
