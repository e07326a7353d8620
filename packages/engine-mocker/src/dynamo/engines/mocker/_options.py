"""The mocker's options: upstream's `MockEngineArgs` names, read from `--extra-engine-args` JSON.

Block size: `block_size` in the JSON wins. Otherwise `--kv-cache-block-size` is used when it was
given (16 too), and upstream's mocker default (64) when it was not. Both set and different is an
error, not a silent choice. The engine declares the size it chose (`MockerEngine.runtime`), so
the card routers read says it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from dynamo.llm.engine import EngineConfig
from dynamo.llm.errors import EngineError


@dataclass(frozen=True, slots=True)
class MockerOptions:
    """Defaults are upstream's (`lib/llm/src/mocker/protocols.rs`)."""

    #: Simulated time is divided by this; 0, a negative value or inf means "do not sleep".
    speedup_ratio: float = 1.0
    num_gpu_blocks: int = 16384
    block_size: int = 64
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    #: Fraction of the KV blocks kept free when admitting a new request.
    watermark: float = 0.01
    dp_size: int = 1
    #: Seed for the random output tokens (not an upstream option; for reproducible tests).
    seed: int | None = None

    @property
    def sleeps(self) -> bool:
        return 0 < self.speedup_ratio < math.inf

    @property
    def watermark_blocks(self) -> int:
        return int(self.watermark * self.num_gpu_blocks)

    @classmethod
    def from_config(cls, config: EngineConfig) -> MockerOptions:
        """Validate `config.extra_engine_args`; an `EngineError` names the first bad option."""
        raw = dict(config.extra_engine_args or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise EngineError(
                f"mocker: unknown option(s) {', '.join(unknown)} in --extra-engine-args; "
                f"known: {', '.join(sorted(known))}"
            )
        flag_bs = config.kv_cache_block_size
        flag_set = flag_bs is not None  # `--kv-cache-block-size` given (16 too)
        if "block_size" in raw and flag_set and raw["block_size"] != flag_bs:
            raise EngineError(
                f"mocker: block_size {raw['block_size']} in --extra-engine-args disagrees with "
                f"--kv-cache-block-size {flag_bs}"
            )
        if "block_size" not in raw and flag_set:
            raw["block_size"] = flag_bs
        values: dict[str, Any] = {}
        for name, value in raw.items():
            values[name] = _check(name, value)
        opts = cls(**values)
        if opts.dp_size != 1:
            raise EngineError("mocker: dp_size > 1 is not supported yet; run one worker per rank")
        if opts.max_num_batched_tokens < opts.block_size:
            raise EngineError("mocker: max_num_batched_tokens must be at least block_size")
        return opts


_INT_MIN = {
    "num_gpu_blocks": 1,
    "block_size": 1,
    "max_num_seqs": 1,
    "max_num_batched_tokens": 1,
    "dp_size": 1,
}


def _check(name: str, value: Any) -> Any:
    if name in _INT_MIN:
        if type(value) is not int or value < _INT_MIN[name]:
            raise EngineError(
                f"mocker: {name} must be an integer >= {_INT_MIN[name]}, got {value!r}"
            )
        return value
    if name == "seed":
        if value is not None and type(value) is not int:
            raise EngineError(f"mocker: seed must be an integer, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EngineError(f"mocker: {name} must be a number, got {value!r}")
    if name == "watermark" and not 0 <= value < 1:
        raise EngineError(f"mocker: watermark must be in [0, 1), got {value!r}")
    if name == "speedup_ratio" and math.isnan(value):
        raise EngineError("mocker: speedup_ratio must be a number, got nan")
    return float(value)


__all__ = ["MockerOptions"]
