"""Prometheus metrics of the tokenizer cache (`dynamo.llm.tokenizer_cache`), read at scrape time.

dynamo_frontend_tokenizer_cache_hits_total{model}           long prompt stretches found cached
dynamo_frontend_tokenizer_cache_misses_total{model}         long stretches encoded and cached
dynamo_frontend_tokenizer_cache_tokens_total{model,source}  prompt tokens by source: cached|encoded
dynamo_frontend_tokenizer_cache_size_tokens{model}          token ids the cache holds
dynamo_frontend_tokenizer_cache_enabled{model}              0 where the tokenizer cannot be cached
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dynamo.frontend.model_manager import ModelManager
from dynamo.llm.tokenizer_cache import SegmentedEncoder


class TokenizerCacheCollector(Collector):
    def __init__(self, models: ModelManager, prefix: str):
        self._models = models
        self._prefix = prefix

    def _encoders(self) -> Iterator[tuple[str, SegmentedEncoder]]:
        for model in self._models.served():
            encoder = getattr(getattr(model, "preprocessor", None), "encoder", None)
            if isinstance(encoder, SegmentedEncoder):
                yield model.name, encoder

    def collect(self) -> Iterator:
        p = f"{self._prefix}_tokenizer_cache"
        hits = CounterMetricFamily(
            f"{p}_hits", "Long prompt stretches found cached", labels=["model"]
        )
        misses = CounterMetricFamily(
            f"{p}_misses", "Long prompt stretches encoded and cached", labels=["model"]
        )
        tokens = CounterMetricFamily(
            f"{p}_tokens", "Prompt tokens, cached or encoded", labels=["model", "source"]
        )
        size = GaugeMetricFamily(f"{p}_size_tokens", "Token ids the cache holds", labels=["model"])
        enabled = GaugeMetricFamily(
            f"{p}_enabled", "1 when the model's tokenizer can be cached", labels=["model"]
        )
        for model, encoder in self._encoders():
            stats = encoder.stats
            hits.add_metric([model], stats.hits)
            misses.add_metric([model], stats.misses)
            tokens.add_metric([model, "cached"], stats.cached_tokens)
            tokens.add_metric([model, "encoded"], stats.encoded_tokens)
            size.add_metric([model], encoder.cache_size()[1])
            enabled.add_metric([model], int(encoder.enabled))
        yield from (hits, misses, tokens, size, enabled)
