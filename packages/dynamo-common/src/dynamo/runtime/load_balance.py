"""Load-aware instance choice for a `Client`: least-loaded and power-of-two choices.

Both read the client's own count of requests in flight per instance (what this process sent
and has not seen end), as upstream's `PushRouter` does with its `RoutingOccupancyState`:

- **least-loaded**: the instance with the fewest requests in flight; ties at random, so fresh,
  idle instances share the load instead of the first one taking every burst.
- **power-of-two**: two distinct instances at random, the one with fewer in flight (the first
  drawn on a tie). It looks at two counters instead of all of them and still keeps the busiest
  instance's excess over the mean at about log log n (Mitzenmacher's "power of two choices"),
  and several frontends that each see only their own requests herd less onto one instance than
  with least-loaded.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

#: The load-aware modes `pick_by_load` takes.
LOAD_MODES = ("least-loaded", "power-of-two")


def pick_by_load(
    mode: str, ids: Sequence[int], in_flight: Mapping[int, int], rng: random.Random | None = None
) -> int:
    """One of `ids` by `mode` (see the module docstring); `in_flight` lacks idle instances."""
    if not ids:
        raise ValueError("no instances to choose from")
    r = rng or random
    if len(ids) == 1:
        return ids[0]
    if mode == "least-loaded":
        least = min(in_flight.get(i, 0) for i in ids)
        tied = [i for i in ids if in_flight.get(i, 0) == least]
        return tied[0] if len(tied) == 1 else r.choice(tied)
    if mode == "power-of-two":
        a, b = r.sample(ids, 2)
        return b if in_flight.get(b, 0) < in_flight.get(a, 0) else a
    raise ValueError(f"unknown load-aware mode {mode!r} (expected one of {', '.join(LOAD_MODES)})")


__all__ = ["LOAD_MODES", "pick_by_load"]
