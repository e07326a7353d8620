"""The stop-string jail: hold back text that may be the start of a stop string, emit the rest."""

from __future__ import annotations

from collections.abc import Sequence


class StopStringJail:
    """Feed text in; get back what is safe to emit, or the match when a stop string completes."""

    __slots__ = ("_held", "_include", "_stops")

    def __init__(self, stops: Sequence[str], include_stop_str_in_output: bool = False):
        self._stops = tuple(s for s in stops if s)
        self._include = include_stop_str_in_output
        self._held = ""

    def __bool__(self) -> bool:
        return bool(self._stops)

    def feed(self, text: str) -> tuple[str, str | None]:
        """(text safe to emit, the stop string that matched or None)."""
        if not self._stops:
            return text, None
        pending = self._held + text
        # The earliest match wins; at equal positions, the longer stop string.
        best: tuple[int, int, str] | None = None
        for stop in self._stops:
            idx = pending.find(stop)
            if idx != -1 and (best is None or (idx, -len(stop)) < (best[0], best[1])):
                best = (idx, -len(stop), stop)
        if best is not None:
            idx, _, stop = best
            self._held = ""
            return pending[: idx + len(stop)] if self._include else pending[:idx], stop
        keep = self._partial_suffix(pending)
        self._held = pending[len(pending) - keep :] if keep else ""
        return pending[: len(pending) - keep], None

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
        longest = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:n]):
                    longest = n
                    break
        return longest

    def release(self) -> str:
        """The stream ended: what was held back was not a stop string after all."""
        held, self._held = self._held, ""
        return held
