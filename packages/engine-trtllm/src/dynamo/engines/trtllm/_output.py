"""TensorRT-LLM's streamed `RequestOutput`s as our `LLMEngineOutput` deltas.

`generate_async(..., streaming=True)` yields the same `RequestOutput` again and again; its
`outputs[0].token_ids` is *cumulative* (the whole completion so far), so each delta is the slice
after what was already sent, as upstream Dynamo's TensorRT-LLM handler does. `finish_reason` is
None until the end, then `stop` (an end id or a stop token: TensorRT-LLM does not return that
token; `stop_reason` is the id, or None for the end id), `length`, `cancelled` (our abort) or
`timeout`. Values are read by attribute, so tests use plain namespaces.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dynamo.llm.engine_output import completion_usage
from dynamo.llm.errors import EngineFailedError


class DeltaMapper:
    """One request's outputs as deltas; `finished` once the last one was seen."""

    def __init__(self, prompt_tokens: int, visible_stop_ids: Iterable[int]) -> None:
        self.prompt_tokens = prompt_tokens
        self.visible = frozenset(visible_stop_ids)
        self.sent = 0
        self.finished = False

    def finish_reason(self, reason: str, stop_reason: Any) -> str:
        if reason == "stop":
            visible = isinstance(stop_reason, str) or stop_reason in self.visible
            return "stop" if visible else "eos"
        if reason in ("length", "cancelled"):
            return reason
        if reason == "timeout":
            raise EngineFailedError("TensorRT-LLM timed the request out")
        raise EngineFailedError(f"TensorRT-LLM finished with an unknown reason {reason!r}")

    def delta(self, result: Any) -> dict[str, Any] | None:
        """The delta for one `RequestOutput` (None when nothing is new)."""
        if not result.outputs:
            raise EngineFailedError("TensorRT-LLM returned an output without sequences")
        out = result.outputs[0]
        token_ids = list(out.token_ids)
        new = token_ids[self.sent :]
        self.sent = len(token_ids)
        delta: dict[str, Any] = {"token_ids": new}
        if out.finish_reason is not None:
            self.finished = True
            delta["finish_reason"] = self.finish_reason(out.finish_reason, out.stop_reason)
            cached = getattr(result, "cached_tokens", None)
            delta["completion_usage"] = completion_usage(self.prompt_tokens, len(token_ids), cached)
        elif not new:
            return None
        return delta


__all__ = ["DeltaMapper"]
