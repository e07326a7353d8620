"""--base-gpu-id as CUDA_VISIBLE_DEVICES."""

import pytest

from dynamo.llm.devices import set_visible_devices, visible_devices
from dynamo.llm.errors import EngineError


def test_ordinals_or_an_index_into_what_is_visible() -> None:
    assert visible_devices(2, 2, None) == "2,3"
    assert visible_devices(1, 2, "4,5,6") == "5,6"
    with pytest.raises(EngineError, match="needs 4 visible devices"):
        visible_devices(2, 2, "0,1,2")
    with pytest.raises(EngineError):
        visible_devices(-1, 1, None)


def test_set_only_when_needed() -> None:
    env: dict[str, str] = {}
    set_visible_devices(0, 4, env)
    assert env == {}
    set_visible_devices(4, 2, env)
    assert env == {"CUDA_VISIBLE_DEVICES": "4,5"}
