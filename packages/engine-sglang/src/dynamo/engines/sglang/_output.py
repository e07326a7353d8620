"""SGLang's stream items as our `LLMEngineOutput` deltas.

With `incremental_streaming_output` on, each item `async_generate(..., stream=True)` yields is
`{"output_ids": [new ids], "meta_info": {...}}` (plus `"text"`, unused), queued items coalesced by
SGLang; `meta_info` carries `finish_reason` (None, or `{"type": "stop", "matched": id|str}`,
`{"type": "length", ...}`, `{"type": "abort", "message", "status_code", ...}`),
`prompt_tokens`, `completion_tokens`, `cached_tokens`, and with logprobs the chunk's
`output_token_logprobs` (`(logprob, token_id, text)` per token) and `output_top_logprobs` (a
list of those per token, best first, or None).

Finish reasons: `stop` on a visible stop token id (or a string), `eos` on EOS or a hidden stop
id (SGLang reports both as `stop`), `length`, and for `abort`: `cancelled` when we asked for it,
a 400 when SGLang rejected the request (status 400), and an engine failure otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dynamo.llm.engine_output import completion_usage
from dynamo.llm.errors import EngineFailedError, InvalidRequestError


def usage(meta: Mapping[str, Any]) -> dict[str, Any]:
    """`completion_usage` from SGLang's counts (with its prefix-cache hits)."""
    return completion_usage(
        int(meta.get("prompt_tokens") or 0),
        int(meta.get("completion_tokens") or 0),
        meta.get("cached_tokens"),
    )


def top_logprobs(entries: Sequence[Sequence[Any]] | None) -> list[dict[str, Any]]:
    """One position's alternatives, SGLang's `(logprob, token_id, text)` tuples, best first."""
    return [
        {"rank": rank, "token_id": int(entry[1]), "logprob": float(entry[0])}
        for rank, entry in enumerate(entries or (), start=1)
    ]


def logprob_fields(token_ids: Sequence[int], meta: Mapping[str, Any], top: int) -> dict[str, Any]:
    """`log_probs` and `top_logprobs` for a chunk's tokens."""
    sampled = meta.get("output_token_logprobs") or []
    if len(sampled) != len(token_ids):
        raise EngineFailedError(f"SGLang sent {len(sampled)} logprobs for {len(token_ids)} tokens")
    tops = meta.get("output_top_logprobs") or [None] * len(token_ids)
    return {
        "log_probs": [float(entry[0]) for entry in sampled],
        "top_logprobs": [top_logprobs(pos)[:top] for pos in tops],
    }


class DeltaMapper:
    """Turns one request's stream items into deltas; `finished` once the last one was seen."""

    def __init__(self, visible_stop_ids: Iterable[int], logprobs: int | None) -> None:
        self.visible = frozenset(visible_stop_ids)
        self.logprobs = logprobs
        self.finished = False

    def finish_reason(self, reason: Mapping[str, Any], cancelled: bool) -> str:
        kind = reason.get("type")
        if kind == "stop":
            matched = reason.get("matched")
            return "stop" if isinstance(matched, str) or matched in self.visible else "eos"
        if kind == "length":
            return "length"
        if kind == "abort":
            status = reason.get("status_code")
            message = reason.get("message") or "aborted"
            if status is not None and 400 <= int(status) < 500:
                raise InvalidRequestError(f"SGLang rejected the request: {message}")
            if cancelled and status is None:
                return "cancelled"
            raise EngineFailedError(f"SGLang aborted the request: {message}")
        raise EngineFailedError(f"SGLang finished with an unknown reason {dict(reason)!r}")

    def delta(self, item: Mapping[str, Any], cancelled: bool) -> dict[str, Any] | None:
        """The delta for one item (None when it carries nothing); `cancelled`: whether we asked
        SGLang to abort this request."""
        meta = item.get("meta_info") or {}
        token_ids = [int(t) for t in item.get("output_ids") or ()]
        out: dict[str, Any] = {"token_ids": token_ids}
        if self.logprobs is not None and token_ids:
            out |= logprob_fields(token_ids, meta, self.logprobs)
        reason = meta.get("finish_reason")
        if reason is not None:
            self.finished = True
            out["finish_reason"] = self.finish_reason(reason, cancelled)
            out["completion_usage"] = usage(meta)
        elif not token_ids:
            return None
        return out


__all__ = ["DeltaMapper", "logprob_fields", "top_logprobs", "usage"]
