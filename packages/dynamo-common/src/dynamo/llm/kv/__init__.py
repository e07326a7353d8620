"""KV-aware routing: block hashing, upstream's KV event JSON, the event publisher, the radix
indexer, per-worker load tracking and the router that combines them.

Nothing here needs a network: the publisher sends through an injected async callable, and the
router takes raw event bytes and worker ids, so the runtime and the frontend plug them in.
"""

from dynamo.llm.kv.events import (
    Cleared,
    KvEventError,
    Removed,
    RouterEvent,
    Stored,
    StoredBlock,
    parse_router_event,
)
from dynamo.llm.kv.hashing import (
    XXH3_SEED,
    block_hash,
    chain_hash,
    local_block_hashes,
    sequence_hashes,
)
from dynamo.llm.kv.indexer import OverlapScores, ParentBlockNotFound, RadixIndexer
from dynamo.llm.kv.load_metrics import (
    ForwardPassMetrics,
    KvStats,
    SpecDecodeStats,
    WorkerLoads,
    WorkerStats,
    kv_metrics_subject,
)
from dynamo.llm.kv.metrics_publisher import WorkerMetricsPublisher
from dynamo.llm.kv.publisher import KvEventPublisher, kv_events_subject
from dynamo.llm.kv.router import KvRouter, KvRouterStats
from dynamo.llm.kv.scheduler import KvScheduler, RouterConfigOverride, softmax_probabilities

__all__ = [
    "XXH3_SEED",
    "Cleared",
    "ForwardPassMetrics",
    "KvEventError",
    "KvEventPublisher",
    "KvRouter",
    "KvRouterStats",
    "KvScheduler",
    "KvStats",
    "OverlapScores",
    "ParentBlockNotFound",
    "RadixIndexer",
    "Removed",
    "RouterConfigOverride",
    "RouterEvent",
    "SpecDecodeStats",
    "Stored",
    "StoredBlock",
    "WorkerLoads",
    "WorkerMetricsPublisher",
    "WorkerStats",
    "block_hash",
    "chain_hash",
    "kv_events_subject",
    "kv_metrics_subject",
    "local_block_hashes",
    "parse_router_event",
    "sequence_hashes",
    "softmax_probabilities",
]
