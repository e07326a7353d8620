"""Made-up but well-formed log probabilities for the mocker's random tokens.

The mocker samples nothing, so there are no real probabilities; but clients and routing tests
that ask for `logprobs` must get the shapes a real engine sends (`LLMEngineOutput.log_probs` and
`top_logprobs`), consistent with the token that was emitted: the emitted token is the most likely
one (rank 1), its alternatives are other tokens of the request's vocabulary with strictly lower
log probabilities, and all probabilities at a position sum to at most 1.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any


def made_up_logprobs(
    token: int, vocab: Sequence[int], top: int, rng: random.Random
) -> tuple[float, list[dict[str, Any]]]:
    """(log probability of `token`, its position's `top` best candidates, best first).

    The candidates are `token` itself then distinct others from `vocab`; fewer than `top` when
    the vocabulary is that small, as real engines may also return fewer.
    """
    # The chosen token takes between a third and nine tenths of the mass; each alternative a
    # share of what is left, halving as the rank grows (so the total stays below 1).
    p = rng.uniform(1 / 3, 0.9)
    chosen = math.log(p)
    candidates = [{"rank": 1, "token_id": token, "logprob": chosen}]
    others = [t for t in dict.fromkeys(vocab) if t != token]
    rest = 1.0 - p
    for rank, other in enumerate(rng.sample(others, min(max(top - 1, 0), len(others))), start=2):
        rest /= 2
        candidates.append({"rank": rank, "token_id": other, "logprob": math.log(rest)})
    return chosen, candidates[: max(top, 0)]
