"""How long a caller waits for a worker's first frame before it calls the worker gone.

A worker acknowledges a request at once, so on a quiet host its first frame comes within
milliseconds and a fixed 1 s bound finds a frozen or partitioned worker quickly. On a host whose
cores are oversubscribed the same acknowledgement can take longer than that, and a fixed bound
then takes a slow but healthy worker for a dead one: the request is retried elsewhere, or fails
when there is nowhere else, and the worker is routed around. A dead worker whose process is gone
closes its connection and is found at once whatever this says; the timeout is for the silent
cases only.

So the bound follows what acknowledgements actually take, as TCP's retransmission timer does
(RFC 6298): a smoothed round-trip time and its mean deviation, the timeout their sum with four
deviations, never below the quiet-host floor and never above a ceiling; a timeout doubles it
until the next acknowledgement is measured (Karn's rule: the timed-out request is not a sample).
"""

from __future__ import annotations

#: RFC 6298's gains for the smoothed time and its deviation.
_ALPHA = 1 / 8
_BETA = 1 / 4


class AckTimeout:
    """The first-frame timeout of one connection to a worker."""

    def __init__(self, floor: float, ceiling: float):
        if not 0 < floor <= ceiling:
            raise ValueError(f"need 0 < floor <= ceiling, got {floor} and {ceiling}")
        self.floor = floor
        self.ceiling = ceiling
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._backoff = 1.0

    def observe(self, seconds: float) -> None:
        """An acknowledgement came `seconds` after its request was sent."""
        if self._srtt is None:
            self._srtt, self._rttvar = seconds, seconds / 2
        else:
            self._rttvar = (1 - _BETA) * self._rttvar + _BETA * abs(self._srtt - seconds)
            self._srtt = (1 - _ALPHA) * self._srtt + _ALPHA * seconds
        self._backoff = 1.0

    def timed_out(self) -> None:
        """A request got no acknowledgement in time: wait longer for the next one."""
        self._backoff = min(self._backoff * 2, self.ceiling / self.floor)

    def seconds(self) -> float:
        """The timeout for the next request's first frame."""
        estimate = self.floor if self._srtt is None else self._srtt + 4 * self._rttvar
        return min(self.ceiling, max(self.floor, estimate) * self._backoff)
