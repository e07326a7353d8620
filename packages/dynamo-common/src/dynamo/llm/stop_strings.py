"""The stop-string jail: hold back text that may be the start of a stop string, emit the rest.

Upstream Dynamo (`backend.rs`) keeps a jail of the last `max(len(stop))` bytes but emits text as
it arrives, so the first half of a stop string split across tokens reaches the client before the
match is seen. This jail holds back exactly the longest suffix that is still a proper prefix of
some stop string, so a stop string never leaks, and releases it as soon as it cannot match.

It runs once per generated token, so `feed` has a fast path: with nothing held and none of the
stop strings' first characters in the new text (the usual case), the text passes straight through.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopStringJail:
    """Feed text in; get back what is safe to emit, or the stop string that completed.

    When several stop strings match in the same text, the one that ends first wins (the one a
    character-by-character stream would have seen first), then the longer one; so the result
    does not depend on how the text was split into pieces.
    """

    __slots__ = ("_firsts", "_held", "_include", "_prefixes", "_stops")

    def __init__(self, stops: Sequence[str], include_stop_str_in_output: bool = False) -> None:
        self._stops = tuple(dict.fromkeys(s for s in stops if s))
        # _prefixes[i][k] is the first k characters of stop i, so the partial-match check slices
        # nothing per call.
        self._prefixes = tuple(tuple(s[:k] for k in range(len(s))) for s in self._stops)
        self._firsts = frozenset(s[0] for s in self._stops)
        self._include = include_stop_str_in_output
        self._held = ""

    def __bool__(self) -> bool:
        return bool(self._stops)

    @property
    def held(self) -> str:
        """The text held back right now: a proper prefix of some stop string."""
        return self._held

    def feed(self, text: str) -> tuple[str, str | None]:
        """(text safe to emit, the stop string that matched or None).

        After a match the text past it is dropped: the caller ends the response there.
        """
        held = self._held
        if not held and self._firsts.isdisjoint(text):
            return text, None
        pending = held + text
        best: str | None = None
        best_start = best_end = 0
        for stop in self._stops:
            start = pending.find(stop)
            if start != -1:
                end = start + len(stop)
                if best is None or end < best_end or (end == best_end and start < best_start):
                    best, best_start, best_end = stop, start, end
        if best is not None:
            self._held = ""
            return (pending[:best_end] if self._include else pending[:best_start]), best
        keep = self._partial_suffix(pending)
        if keep:
            self._held = pending[-keep:]
            return pending[:-keep], None
        self._held = ""
        return pending, None

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
        n = len(text)
        longest = 0
        for stop, prefixes in zip(self._stops, self._prefixes, strict=True):
            # Only a start within the last len(stop) - 1 characters leaves a proper prefix.
            first = stop[0]
            i = text.find(first, max(0, n - len(stop) + 1))
            while i != -1 and n - i > longest:
                if text.endswith(prefixes[n - i]):
                    longest = n - i
                    break
                i = text.find(first, i + 1)
        return longest

    def release(self) -> str:
        """The stream ended: what was held back was not a stop string after all."""
        held, self._held = self._held, ""
        return held
