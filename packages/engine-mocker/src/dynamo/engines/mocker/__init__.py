"""`out=mocker`: a simulated vLLM-like engine (paged KV cache, prefix caching, KV events and
load metrics)."""

from dynamo.engines.mocker._engine import DEFAULT_MAX_TOKENS, MockerEngine
from dynamo.engines.mocker._kv_cache import KvCache, KvEventSink
from dynamo.engines.mocker._options import MockerOptions
from dynamo.engines.mocker._scheduler import MockScheduler, decode_ms, prefill_ms

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "KvCache",
    "KvEventSink",
    "MockScheduler",
    "MockerEngine",
    "MockerOptions",
    "decode_ms",
    "prefill_ms",
]
