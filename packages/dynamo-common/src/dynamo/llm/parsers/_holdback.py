"""Holding back text that may be the start of some markup, so it never leaks half-seen."""

from __future__ import annotations

from collections.abc import Sequence


def partial_suffix(text: str, markers: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of one of `markers`."""
    longest = 0
    for marker in markers:
        for k in range(min(len(marker) - 1, len(text)), longest, -1):
            if text.endswith(marker[:k]):
                longest = k
                break
    return longest


def find_first(text: str, markers: Sequence[str]) -> tuple[int, str] | None:
    """(position, marker) of the earliest marker in `text`, or None."""
    best: tuple[int, str] | None = None
    for marker in markers:
        i = text.find(marker)
        if i != -1 and (best is None or i < best[0]):
            best = (i, marker)
    return best
