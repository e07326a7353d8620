"""The worker's publishers reach the vLLM engine's load reporters (no vLLM: the engine object
is made around nothing, as `attach` and `close` touch only the reporters and the relay)."""

from __future__ import annotations

from dynamo.engines.vllm._engine import VllmEngine
from dynamo.engines.vllm._metrics import LoadReporter
from dynamo.llm.kv.engine_publishers import EnginePublishers


class Sink:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def publish(self, metrics: dict) -> None:
        self.sent.append(metrics)


async def test_attach_publishes_the_idle_start_then_every_step() -> None:
    engine = VllmEngine(llm=None, vllm=None, max_model_len=128)
    reporter = LoadReporter(None, num_gpu_blocks=100, max_num_seqs=8)
    engine.reporters = {0: reporter}
    # vLLM's log_engine_initialized, before any publisher exists: kept, not lost.
    idle = reporter.record(num_running=0, num_waiting=0, kv_cache_usage=0.0)
    runtime = engine.runtime()
    assert runtime.load_metrics and not runtime.kv_events  # no KV endpoint: no events asked for
    sink = Sink()
    await engine.attach(EnginePublishers(metrics=sink))
    assert sink.sent == [idle]
    busy = reporter.record(num_running=2, num_waiting=1, kv_cache_usage=0.5)
    assert sink.sent == [idle, busy]
    assert busy["kv_stats"]["kv_active_blocks"] == 50
