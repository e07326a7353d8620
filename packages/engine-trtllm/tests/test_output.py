"""TensorRT-LLM's cumulative streamed outputs as our deltas."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dynamo.engines.trtllm._output import DeltaMapper
from dynamo.llm.errors import EngineFailedError


def result(ids, finish=None, stop_reason=None, cached=None):
    out = SimpleNamespace(token_ids=ids, finish_reason=finish, stop_reason=stop_reason)
    return SimpleNamespace(outputs=[out], cached_tokens=cached)


def test_cumulative_outputs_become_new_tokens_only() -> None:
    mapper = DeltaMapper(prompt_tokens=3, visible_stop_ids=[9])
    assert mapper.delta(result([11])) == {"token_ids": [11]}
    assert mapper.delta(result([11])) is None  # nothing new
    assert mapper.delta(result([11, 12, 13])) == {"token_ids": [12, 13]}
    last = mapper.delta(result([11, 12, 13, 14], "length", cached=2))
    assert mapper.finished
    assert last == {
        "token_ids": [14],
        "finish_reason": "length",
        "completion_usage": {
            "prompt_tokens": 3,
            "completion_tokens": 4,
            "total_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 2},
        },
    }


@pytest.mark.parametrize(
    ("finish", "stop_reason", "reason"),
    [
        ("stop", None, "eos"),  # the end id
        ("stop", 2, "eos"),  # a hidden stop id
        ("stop", 9, "stop"),  # a visible one (not sent to the engine, but named if seen)
        ("stop", "END", "stop"),
        ("length", None, "length"),
        ("cancelled", None, "cancelled"),
    ],
)
def test_finish_reasons(finish, stop_reason, reason) -> None:
    delta = DeltaMapper(1, [9]).delta(result([5], finish, stop_reason))
    assert delta is not None and delta["finish_reason"] == reason


def test_failures() -> None:
    with pytest.raises(EngineFailedError, match="timed the request out"):
        DeltaMapper(1, []).delta(result([5], "timeout"))
    with pytest.raises(EngineFailedError, match="unknown reason"):
        DeltaMapper(1, []).delta(result([5], "odd"))
    with pytest.raises(EngineFailedError, match="without sequences"):
        DeltaMapper(1, []).delta(SimpleNamespace(outputs=[]))
