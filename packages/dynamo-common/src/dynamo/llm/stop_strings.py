"""The stop-string jail: hold back text that may be the start of a stop string, emit the rest.

Upstream Dynamo (`backend.rs`) keeps a jail of the last `max(len(stop))` bytes but emits text as
it arrives, so the first half of a stop string split across tokens reaches the client before the
match is seen. This jail holds back exactly the longest suffix that is still a proper prefix of
some stop string, so a stop string never leaks, and releases it as soon as it cannot match.

Each stop string is matched by a Knuth-Morris-Pratt automaton whose state (how much of the stop
string the text so far ends with) carries from one piece to the next, so building the jail is
linear in the stop strings' length and feeding it is linear in the text: a long stop string in
a request costs its length, never its square.

It runs once per generated token, so `feed` has a fast path: with nothing held and none of the
stop strings' first characters in the new text (the usual case), the text passes straight through.
"""

from __future__ import annotations

from collections.abc import Sequence


def _failure(stop: str) -> list[int]:
    """KMP's failure function: `f[i]` is the longest proper border of `stop[: i + 1]`."""
    f = [0] * len(stop)
    k = 0
    for i in range(1, len(stop)):
        c = stop[i]
        while k and stop[k] != c:
            k = f[k - 1]
        if stop[k] == c:
            k += 1
        f[i] = k
    return f


class _Matcher:
    """One stop string and how much of it the text fed so far ends with."""

    __slots__ = ("failure", "first", "matched", "stop")

    def __init__(self, stop: str) -> None:
        self.stop = stop
        self.first = stop[0]
        self.failure = _failure(stop)
        self.matched = 0

    def scan(self, text: str) -> int:
        """Advance over `text`; the index in `text` just past the first full match, or -1.

        Without a match, `matched` is then the longest suffix of everything fed that is a
        proper prefix of the stop string.
        """
        stop, failure, first = self.stop, self.failure, self.first
        full = len(stop)
        k = self.matched
        i, n = 0, len(text)
        while i < n:
            if k == 0:
                # Nothing matched: skip straight to the next possible start (str.find is C).
                i = text.find(first, i)
                if i == -1:
                    break
            c = text[i]
            while k and stop[k] != c:
                k = failure[k - 1]
            if stop[k] == c:
                k += 1
            i += 1
            if k == full:
                self.matched = 0
                return i
        self.matched = k
        return -1


class StopStringJail:
    """Feed text in; get back what is safe to emit, or the stop string that completed.

    When several stop strings match in the same text, the one that ends first wins (the one a
    character-by-character stream would have seen first), then the longer one; so the result
    does not depend on how the text was split into pieces.
    """

    __slots__ = ("_firsts", "_held", "_include", "_matchers")

    def __init__(self, stops: Sequence[str], include_stop_str_in_output: bool = False) -> None:
        self._matchers = tuple(_Matcher(s) for s in dict.fromkeys(s for s in stops if s))
        self._firsts = frozenset(m.first for m in self._matchers)
        self._include = include_stop_str_in_output
        self._held = ""

    def __bool__(self) -> bool:
        return bool(self._matchers)

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
        best_end = 0
        for matcher in self._matchers:
            end = matcher.scan(text)
            if end == -1:
                continue
            end += len(held)
            # The earliest end wins; at the same end, the longer stop (it started first).
            if (
                best is None
                or end < best_end
                or (end == best_end and len(matcher.stop) > len(best))
            ):
                best, best_end = matcher.stop, end
        if best is not None:
            self._held = ""
            for matcher in self._matchers:
                matcher.matched = 0
            return (pending[:best_end] if self._include else pending[: best_end - len(best)]), best
        keep = max(m.matched for m in self._matchers)
        if keep:
            self._held = pending[-keep:]
            return pending[:-keep], None
        self._held = ""
        return pending, None

    def release(self) -> str:
        """The stream ended: what was held back was not a stop string after all."""
        held, self._held = self._held, ""
        for matcher in self._matchers:
            matcher.matched = 0
        return held
