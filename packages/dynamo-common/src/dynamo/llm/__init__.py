"""Dynamo-Py LLM layer: protocols, preprocessing, the engine contract and model registration.

Upstream's worker-side load metrics (`WorkerMetricsPublisher`, `ForwardPassMetrics`,
`WorkerStats`, `KvStats`, `SpecDecodeStats`) are importable from here too, as upstream's
`from dynamo.llm import ...` writes them; they load on first use (they live in `dynamo.llm.kv`).
"""

from typing import TYPE_CHECKING

from dynamo.llm.engine import Engine, EngineConfig
from dynamo.llm.errors import EngineError
from dynamo.llm.model_type import ModelType
from dynamo.llm.register import register_llm
from dynamo.runtime.context import Context
from dynamo.runtime.lazy_exports import lazy_exports

if TYPE_CHECKING:  # for type checkers; at run time they load on first use (`__getattr__`)
    from dynamo.llm.kv.load_metrics import (
        ForwardPassMetrics,
        KvStats,
        SpecDecodeStats,
        WorkerStats,
    )
    from dynamo.llm.kv.metrics_publisher import WorkerMetricsPublisher

_LOAD_METRICS = {
    "ForwardPassMetrics": "dynamo.llm.kv.load_metrics",
    "KvStats": "dynamo.llm.kv.load_metrics",
    "SpecDecodeStats": "dynamo.llm.kv.load_metrics",
    "WorkerStats": "dynamo.llm.kv.load_metrics",
    "WorkerMetricsPublisher": "dynamo.llm.kv.metrics_publisher",
}


__getattr__ = lazy_exports(__name__, _LOAD_METRICS)


__all__ = [
    "Context",
    "Engine",
    "EngineConfig",
    "EngineError",
    "ForwardPassMetrics",
    "KvStats",
    "ModelType",
    "SpecDecodeStats",
    "WorkerMetricsPublisher",
    "WorkerStats",
    "register_llm",
]
