"""Option parsing: upstream's names and defaults, one clear error per bad option."""

import math

import pytest

from dynamo.engines.mocker import MockerOptions
from dynamo.llm.engine import EngineConfig
from dynamo.llm.errors import EngineError


def opts(extra: dict | None = None, **config: object) -> MockerOptions:
    return MockerOptions.from_config(
        EngineConfig(model_name="m", extra_engine_args=extra or {}, **config)  # type: ignore[arg-type]
    )


def test_upstream_defaults() -> None:
    o = opts()
    assert (o.speedup_ratio, o.num_gpu_blocks, o.block_size) == (1.0, 16384, 64)
    assert (o.max_num_seqs, o.max_num_batched_tokens, o.watermark, o.dp_size) == (
        256,
        8192,
        0.01,
        1,
    )
    assert o.watermark_blocks == 163
    assert o.sleeps


def test_values_are_read() -> None:
    o = opts({"speedup_ratio": 10, "num_gpu_blocks": 100, "block_size": 16, "max_num_seqs": 2})
    assert (o.speedup_ratio, o.num_gpu_blocks, o.block_size, o.max_num_seqs) == (10.0, 100, 16, 2)


@pytest.mark.parametrize("ratio", [0, -1, math.inf])
def test_no_sleeping(ratio: float) -> None:
    assert not opts({"speedup_ratio": ratio}).sleeps


def test_block_size_sources() -> None:
    assert opts(kv_cache_block_size=32).block_size == 32
    assert opts({"block_size": 8}).block_size == 8
    assert opts({"block_size": 32}, kv_cache_block_size=32).block_size == 32
    with pytest.raises(EngineError, match="disagrees"):
        opts({"block_size": 8}, kv_cache_block_size=32)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"num_gpu_block": 5}, "unknown option.*num_gpu_block"),
        ({"num_gpu_blocks": 0}, "num_gpu_blocks must be an integer >= 1"),
        ({"block_size": 1.5}, "block_size must be an integer"),
        ({"max_num_seqs": True}, "max_num_seqs must be an integer"),
        ({"watermark": 1.0}, "watermark must be in"),
        ({"speedup_ratio": "fast"}, "speedup_ratio must be a number"),
        ({"dp_size": 2}, "dp_size > 1 is not supported"),
        ({"block_size": 64, "max_num_batched_tokens": 32}, "at least block_size"),
        ({"seed": "x"}, "seed must be an integer"),
    ],
)
def test_bad_options(extra: dict, message: str) -> None:
    with pytest.raises(EngineError, match=message) as info:
        opts(extra)
    assert "\n" not in str(info.value)


def test_an_explicit_block_size_of_16_is_not_unset() -> None:
    with pytest.raises(EngineError, match="disagrees"):
        opts({"block_size": 32}, kv_cache_block_size=16)
    assert opts({"block_size": 32}).block_size == 32  # the flag not given: extra args decide
