"""Time to first token, predicted per worker and learned online from what the router observes.

The KV router's `predicted` cost (`--router-cost predicted`) is the time this request would wait
for its first token on each worker, in seconds:

    ttft(w) = overhead + speed(w) * (per_token * prefill_ahead(w) + per_block * active_blocks(w)
                                     + busy_cost * busy(w))

- `prefill_ahead`: the prompt tokens the worker must prefill before this request's first
  token: those of the requests already routed to it that have not answered yet, those the
  worker reports waiting beyond them (other frontends' requests), and this request's own
  tokens after its cached prefix;
- `active_blocks`: the KV blocks of the requests it is running (decode steps share the GPU with
  the prefill, and cost more the fuller the cache);
- `busy`: 1 when the worker is running any request, 0 when idle. A first token on a busy
  worker waits for the engine's step in progress and shares the next step with its decodes: a
  jump at the first running request that the per-block term alone cannot fit (mocker, ~3.9k-
  token prompt fully cached: ~22 ms idle, ~44 ms beside one 62-block decoding request). Without
  it the model was 21-33% off on average on workload T, and 5-8% with it
  (bench/kv_routing_sim.py);
- `overhead`, `per_token`, `per_block`, `busy_cost`: one linear model for all workers, fitted by recursive
  least squares (with exponential forgetting, so it follows a load that changes) on every
  observed time to first token, with the features the request had when it was routed;
- `speed(w)`: each worker's own observed / predicted ratio of the work-dependent part (an EWMA,
  learned from the observations where that part is at least the overhead), so a slower GPU, or
  a worker sharing its GPU, is predicted slower without splitting the samples per worker. It
  does not scale the overhead: an idle holder of the whole prompt stays the best choice
  whatever the noise in its speed.

When the worker's KV cache (its reported `kv_total_blocks`) cannot take the request's new
blocks beside its active ones, the engine queues it until a running request ends: the mean
time from routing to the end of a request (an EWMA, `request_s`) is added.

A busy holder of a prompt's prefix therefore loses to an idle cold worker exactly when the
cold prefill is predicted faster than waiting behind the holder's queue, and the cost keeps
its meaning (seconds) on any hardware. Before any observation the model starts from rough
GPU-like priors (20 ms + 15 µs per prefill token + 5 µs per active block + 10 ms when busy, the
shape of upstream's mocker timings); the first few dozen first tokens replace them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: Prior coefficients: seconds, seconds per 1000 prefill tokens, seconds per 1000 active blocks,
#: seconds when the worker is running anything.
PRIOR = (0.020, 0.015, 0.005, 0.010)
#: Recursive least squares forgetting factor: samples older than ~1/(1-λ) weigh little.
FORGETTING = 0.995
#: How far the prior is trusted (initial covariance): small = a stiff prior.
PRIOR_VARIANCE = 1.0
#: EWMA weight of one observation in a worker's speed, and the speed's bounds.
SPEED_ALPHA = 0.1
SPEED_BOUNDS = (0.25, 4.0)
#: Prior mean seconds from routing to the end of a request, and its EWMA weight.
PRIOR_REQUEST_S = 0.5
REQUEST_ALPHA = 0.05
#: The smallest per-1000-token prefill time used: an overlap always lowers the prediction.
MIN_PER_KTOKEN = 1e-4


@dataclass(frozen=True, slots=True)
class TtftFeatures:
    """What a request's time to first token is predicted from (and later learned against)."""

    prefill_tokens: float
    active_blocks: float
    #: 1 when the worker has requests in flight (its step in progress must end first, and
    #: decodes share the next one), 0 when it is idle.
    busy: float = 0.0

    def vector(self) -> tuple[float, float, float, float]:
        return (1.0, self.prefill_tokens / 1000.0, self.active_blocks / 1000.0, self.busy)


class TtftModel:
    """The shared linear model and each worker's speed (see the module docstring)."""

    def __init__(self, prior: tuple[float, ...] = PRIOR) -> None:
        self.theta = list(prior) + [0.0] * (len(PRIOR) - len(prior))
        n = len(self.theta)
        self._p = [[PRIOR_VARIANCE if i == j else 0.0 for j in range(n)] for i in range(n)]
        self._speed: dict[int, float] = {}
        #: Observations learned from, and the mean absolute relative error of the last ones.
        self.observations = 0
        self.relative_error = 0.0
        #: Mean seconds from routing to the end of a request: what a request that finds the
        #: worker's KV cache full waits for.
        self.request_s = PRIOR_REQUEST_S

    def observe_request(self, seconds: float) -> None:
        """A request ended `seconds` after it was routed."""
        if seconds > 0:
            self.request_s += REQUEST_ALPHA * (seconds - self.request_s)

    def coefficients(self) -> tuple[float, float, float, float]:
        """(overhead, per 1000 tokens, per 1000 blocks, busy), clamped to be physically
        sensible."""
        c0, c1, c2, c3 = self.theta
        return max(c0, 0.0), max(c1, MIN_PER_KTOKEN), max(c2, 0.0), max(c3, 0.0)

    def speed(self, worker: int) -> float:
        return self._speed.get(worker, 1.0)

    def predict(self, worker: int, features: TtftFeatures, prefill_weight: float = 1.0) -> float:
        """Seconds to the first token on `worker`; `prefill_weight` scales the prefill term
        (the per-request `overlap_score_weight`)."""
        return self.predictor(prefill_weight)(worker, features)

    def predictor(self, prefill_weight: float = 1.0) -> Callable[[int, TtftFeatures], float]:
        """`predict` with the coefficients read once, for the many workers of one routing
        decision (clamping them per worker was a sixth of a decision's time at 64 workers)."""
        c0, c1, c2, c3 = self.coefficients()
        per_token = prefill_weight * c1 / 1000.0
        per_block = c2 / 1000.0
        speed = self._speed.get

        def predict(worker: int, f: TtftFeatures) -> float:
            work = per_token * f.prefill_tokens + per_block * f.active_blocks + c3 * f.busy
            return c0 + speed(worker, 1.0) * work

        return predict

    def observe(self, worker: int, features: TtftFeatures, ttft_s: float) -> None:
        """A first token came `ttft_s` seconds after the request was routed to `worker`."""
        if ttft_s <= 0:
            return
        predicted = self.predict(worker, features)
        self.observations += 1
        error = abs(ttft_s - predicted) / ttft_s
        self.relative_error += (error - self.relative_error) * (
            1.0 if self.observations == 1 else SPEED_ALPHA
        )
        c0, c1, c2, c3 = self.coefficients()
        x = features.vector()
        work = c1 * x[1] + c2 * x[2] + c3 * x[3]
        speed = self._speed.get(worker, 1.0)
        if work >= c0:  # informative about the worker's rate, not only about the overhead
            lo, hi = SPEED_BOUNDS
            ratio = min(max((ttft_s - c0) / work, lo), hi)
            speed = self._speed[worker] = speed + SPEED_ALPHA * (ratio - speed)
        # The shared model learns in every worker's own units.
        self._rls_update((1.0, *(speed * v for v in x[1:])), ttft_s)

    def _rls_update(self, x: tuple[float, ...], y: float) -> None:
        p, theta, lam = self._p, self.theta, FORGETTING
        n = len(theta)
        px = [sum(p[i][j] * x[j] for j in range(n)) for i in range(n)]
        denom = lam + sum(x[i] * px[i] for i in range(n))
        gain = [v / denom for v in px]
        err = y - sum(theta[i] * x[i] for i in range(n))
        for i in range(n):
            theta[i] += gain[i] * err
        # P = (P - k (P x)^T) / λ; P stays symmetric.
        self._p = [[(p[i][j] - gain[i] * px[j]) / lam for j in range(n)] for i in range(n)]

    def remove_worker(self, worker: int) -> None:
        self._speed.pop(worker, None)


__all__ = ["TtftFeatures", "TtftModel"]
