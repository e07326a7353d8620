"""Slots: which sequence ids (KV streams) are free, and what a free one still holds.

A slot is one llama.cpp sequence id with its own KV stream. A request takes the lowest free one
(running sequences then stay at consecutive ids, which llama.cpp decodes in one micro-batch) and
gives it back when it ends. Without prefix caching its KV cells are dropped at once; with it they
stay, and a later prompt that starts the same way takes the slot holding the longest common prefix
and skips that part of its prefill.
"""

from __future__ import annotations


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class SlotTable:
    """The free slots of `n` and, with prefix caching, the tokens each free slot's cells hold."""

    def __init__(self, n: int):
        self.size = n
        self._free = set(range(n))
        self._held: list[list[int]] = [[] for _ in range(n)]

    @property
    def free(self) -> int:
        return len(self._free)

    def take(self, prompt: list[int]) -> tuple[int, int]:
        """A free slot for `prompt` and how many of its first tokens that slot's cells already
        hold (never all of them: the last prompt token is decoded again for its logits)."""
        best, reuse = min(self._free), 0
        for slot in sorted(self._free):
            n = min(common_prefix(prompt, self._held[slot]), len(prompt) - 1)
            if n > reuse:
                best, reuse = slot, n
        self._free.remove(best)
        self._held[best] = []
        return best, reuse

    def give_back(self, slot: int, held: list[int] | None = None) -> None:
        """Free `slot`; `held` is what its KV cells still hold (None: they were dropped)."""
        self._held[slot] = held or []
        self._free.add(slot)
