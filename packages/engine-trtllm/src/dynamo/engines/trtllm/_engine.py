"""`TrtllmEngine`: a Backend engine over one TensorRT-LLM `LLM` (PyTorch backend), as upstream
Dynamo's TensorRT-LLM worker.

- Our preprocessor's token ids go in (`generate_async(token_ids, sampling_params,
  streaming=True)`); each streamed `RequestOutput` carries the whole completion so far, and the
  new tokens become a delta (`_output`). TensorRT-LLM batches concurrent requests itself.
- Cancellation, the stopped and killed cases and shutdown are `LibraryEngine`'s: a stopped
  request is cancelled in TensorRT-LLM with `RequestOutput.abort()`.
- A distributed worker (`in=dyn://`) attaches its publishers; TensorRT-LLM's KV cache events and
  iteration stats are polled into them (`_publishers`). `runtime()` declares its KV block size.
- TensorRT-LLM is imported inside `start`, so this module and the entry point load without it.
  `LLM(...)` is built on the event loop's thread, as upstream's worker does (its results' async
  iteration belongs to that loop); the model load blocks the loop meanwhile, before any serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
from collections.abc import AsyncGenerator
from typing import Any, Self

from dynamo.engines.trtllm._args import LlmPlan, plan_llm_args
from dynamo.engines.trtllm._output import DeltaMapper
from dynamo.engines.trtllm._publishers import Pollers
from dynamo.engines.trtllm._sampling import (
    FEATURES,
    SUPPORTED_FIELDS,
    features_for,
    sampling_kwargs,
)
from dynamo.llm import Context, EngineConfig
from dynamo.llm.devices import set_visible_devices
from dynamo.llm.engine import ENGINE_FLAGS, EngineRuntime, import_library
from dynamo.llm.errors import EngineFailedError, InvalidRequestError, first_line
from dynamo.llm.generation_options import GenerationOptions
from dynamo.llm.kv.engine_publishers import EnginePublishers
from dynamo.llm.library_engine import LibraryEngine, LibraryRun

log = logging.getLogger(__name__)


def llm_arg_names() -> frozenset[str]:
    """What `LLM(...)` takes: its named parameters and `TorchLlmArgs`' fields (the `**kwargs`)."""
    from tensorrt_llm import LLM
    from tensorrt_llm.llmapi.llm_args import TorchLlmArgs

    named = set(inspect.signature(LLM.__init__).parameters) - {"self", "kwargs"}
    return frozenset(named | set(TorchLlmArgs.model_fields) | {"backend"})


class TrtllmEngine(LibraryEngine):
    """One TensorRT-LLM `LLM`; see the module docstring."""

    # MPI assigns ranks: the rank and leader address of SGLang's and vLLM's launches mean nothing.
    accepted_flags = ENGINE_FLAGS - {"node_rank", "leader_addr"}
    features = FEATURES
    library = "tensorrt_llm"
    library_requirement = "tensorrt-llm"
    library_name = "TensorRT-LLM"
    supported_fields = SUPPORTED_FIELDS

    def __init__(
        self, llm: Any, plan: LlmPlan, max_seq_len: int | None, distributed: bool = False
    ) -> None:
        super().__init__()
        self._llm = llm
        self.plan = plan
        self.max_seq_len = max_seq_len
        #: Started for a worker: KV cache events and iteration stats are on.
        self.distributed = distributed
        self.features = features_for(plan.guided_decoding)

    @classmethod
    async def start(cls, config: EngineConfig) -> Self:
        tensorrt_llm = import_library("trtllm", cls)
        from tensorrt_llm.llmapi import KvCacheConfig

        plan = plan_llm_args(
            config,
            llm_arg_names(),
            distributed=config.distributed,
            environ=os.environ,
        )
        per_node = plan.world_size // max(1, config.num_nodes)
        set_visible_devices(config.base_gpu_id, per_node)
        kwargs = {**plan.kwargs, "kv_cache_config": KvCacheConfig(**plan.kwargs["kv_cache_config"])}
        log.info("starting TensorRT-LLM on %s", kwargs["model"])
        try:
            llm = tensorrt_llm.LLM(**kwargs)
        except (ValueError, TypeError, RuntimeError, OSError) as e:
            raise cls.start_failed(e) from None
        max_seq_len = plan.kwargs.get("max_seq_len") or getattr(
            getattr(llm, "args", None), "max_seq_len", None
        )
        if max_seq_len is None and config.card is not None:
            max_seq_len = config.card.context_length
        return cls(llm, plan, max_seq_len, config.distributed)

    def runtime(self) -> EngineRuntime:
        """The KV block size routers hash with; for a worker, one KV event stream per
        attention-DP rank and load reports."""
        dp = (
            int(self.plan.kwargs["tensor_parallel_size"])
            if self.plan.kwargs.get("enable_attention_dp")
            else 1
        )
        return EngineRuntime(
            kv_cache_block_size=self.plan.block_size,
            kv_events=self.distributed,
            data_parallel_size=dp,
            load_metrics=self.distributed,
        )

    async def start_feeds(self, publishers: EnginePublishers) -> Pollers:
        return Pollers(self._llm, publishers, self.plan.block_size)

    # -- serving ------------------------------------------------------------------------------------

    def prepare(self, opts: GenerationOptions, visible_stops: tuple[int, ...]) -> Any:
        from tensorrt_llm import SamplingParams
        from tensorrt_llm.sampling_params import GuidedDecodingParams

        kwargs = sampling_kwargs(
            opts,
            visible_stops,
            max_seq_len=self.max_seq_len,
            guided_decoding=self.plan.guided_decoding,
        )
        if "guided_decoding" in kwargs:
            kwargs["guided_decoding"] = GuidedDecodingParams(**kwargs["guided_decoding"])
        try:
            return SamplingParams(**kwargs)
        except (ValueError, TypeError) as e:
            raise InvalidRequestError(first_line(e)) from None

    async def submit(
        self, opts: GenerationOptions, visible_stops: tuple[int, ...], params: Any, context: Context
    ) -> LibraryRun:
        try:
            result = self._llm.generate_async(opts.prompt, sampling_params=params, streaming=True)
        except (ValueError, TypeError) as e:
            raise InvalidRequestError(first_line(e)) from None
        return _Run(result, DeltaMapper(len(opts.prompt), visible_stops))

    async def shutdown(self) -> None:
        await asyncio.to_thread(self._llm.shutdown)


class _Run(LibraryRun):
    """One request in TensorRT-LLM: its `RequestOutput` (streamed, and aborted) and mapper."""

    def __init__(self, result: Any, mapper: DeltaMapper) -> None:
        self._result = result
        self._mapper = mapper

    async def outputs(self) -> AsyncGenerator[Any, None]:
        """TensorRT-LLM's errors while streaming: a request it rejects (ValueError) is the
        client's fault, anything else the engine's."""
        try:
            async for output in self._result:
                yield output
        except ValueError as e:
            raise InvalidRequestError(first_line(e)) from None
        except (RuntimeError, OSError) as e:
            raise EngineFailedError(f"TensorRT-LLM failed: {first_line(e)}") from None

    def delta(self, output: Any, stopped: bool) -> dict[str, Any] | None:
        return self._mapper.delta(output)

    @property
    def finished(self) -> bool:
        return self._mapper.finished

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # it may have ended meanwhile
            self._result.abort()


__all__ = ["TrtllmEngine", "llm_arg_names"]
