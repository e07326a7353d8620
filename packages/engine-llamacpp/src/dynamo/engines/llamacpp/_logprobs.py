"""Log probabilities of sampled tokens, from the raw logits of their batch row (the model's
distribution before temperature, penalties or a grammar, as vLLM reports by default)."""

from __future__ import annotations

from typing import Any

import llama_cpp
import numpy as np


def row_logprobs(ctx: Any, row: int, n_vocab: int) -> np.ndarray:
    """log softmax of batch row `row`'s logits (read before anything changes them)."""
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(n_vocab,))
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())


def token_entry(logprobs: np.ndarray, token: int, top: int) -> tuple[float, list[dict[str, Any]]]:
    """(log probability of `token`, the `top` most likely tokens, best first, ranked from 1)."""
    best: list[dict[str, Any]] = []
    if top > 0:
        ids = np.argpartition(-logprobs, top - 1)[:top]
        ids = ids[np.argsort(-logprobs[ids], kind="stable")]
        best = [
            {"rank": rank, "token_id": int(t), "logprob": float(logprobs[t])}
            for rank, t in enumerate(ids, start=1)
        ]
    return float(logprobs[token]), best
