"""`TrtllmEngine`: a Backend engine over one TensorRT-LLM `LLM` (PyTorch backend), as upstream
Dynamo's TensorRT-LLM worker.

- Our preprocessor's token ids go in (`generate_async(token_ids, sampling_params,
  streaming=True)`); each streamed `RequestOutput` carries the whole completion so far, and the
  new tokens become a delta (`_output`). TensorRT-LLM batches concurrent requests itself.
- Cancellation: when the request's context is stopped (client gone, a stop string or a visible
  stop token matched by our decoder), `RequestOutput.abort()` cancels it in TensorRT-LLM, and the
  stream ends with `cancelled`.
- A distributed worker (`in=dyn://`) relays TensorRT-LLM's KV cache events and iteration stats to
  routers (`_publishers`).
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
from collections.abc import AsyncIterator
from typing import Any, Self

from dynamo.engines.trtllm._args import LlmPlan, plan_llm_args
from dynamo.engines.trtllm._output import DeltaMapper
from dynamo.engines.trtllm._publishers import Publishers
from dynamo.engines.trtllm._sampling import (
    FEATURES,
    SUPPORTED_FIELDS,
    features_for,
    sampling_kwargs,
)
from dynamo.llm import Context, Engine, EngineConfig, EngineError, ModelType
from dynamo.llm.devices import set_visible_devices
from dynamo.llm.engine import ENGINE_FLAGS, import_library
from dynamo.llm.errors import EngineFailedError, InvalidRequestError, first_line
from dynamo.llm.generation_options import GenerationOptions

log = logging.getLogger(__name__)


def llm_arg_names() -> frozenset[str]:
    """What `LLM(...)` takes: its named parameters and `TorchLlmArgs`' fields (the `**kwargs`)."""
    from tensorrt_llm import LLM
    from tensorrt_llm.llmapi.llm_args import TorchLlmArgs

    named = set(inspect.signature(LLM.__init__).parameters) - {"self", "kwargs"}
    return frozenset(named | set(TorchLlmArgs.model_fields) | {"backend"})


class TrtllmEngine(Engine):
    """One TensorRT-LLM `LLM`; see the module docstring."""

    model_type = ModelType.Backend
    requires_model = True
    # MPI assigns ranks: the rank and leader address of SGLang's and vLLM's launches mean nothing.
    accepted_flags = ENGINE_FLAGS - {"node_rank", "leader_addr"}
    features = FEATURES
    library = "tensorrt_llm"
    library_requirement = "tensorrt-llm"

    def __init__(self, llm: Any, plan: LlmPlan, max_seq_len: int | None) -> None:
        self._llm = llm
        self.plan = plan
        self.max_seq_len = max_seq_len
        self.features = features_for(plan.guided_decoding)
        self.publishers: Publishers | None = None
        self._closed = False

    @classmethod
    async def start(cls, config: EngineConfig) -> Self:
        tensorrt_llm = import_library("trtllm", cls)
        from tensorrt_llm.llmapi import KvCacheConfig

        plan = plan_llm_args(
            config,
            llm_arg_names(),
            distributed=config.endpoint is not None,
            environ=os.environ,
        )
        per_node = plan.world_size // max(1, config.num_nodes)
        set_visible_devices(config.base_gpu_id, per_node)
        if config.card is not None:
            # Routers read the block size from the card: the one KV events are hashed with.
            config.card.kv_cache_block_size = plan.block_size
        kwargs = {**plan.kwargs, "kv_cache_config": KvCacheConfig(**plan.kwargs["kv_cache_config"])}
        log.info("starting TensorRT-LLM on %s", kwargs["model"])
        try:
            llm = tensorrt_llm.LLM(**kwargs)
        except (ValueError, TypeError, RuntimeError, OSError) as e:
            raise EngineError(f"TensorRT-LLM could not start: {first_line(e)}") from None
        max_seq_len = plan.kwargs.get("max_seq_len") or getattr(
            getattr(llm, "args", None), "max_seq_len", None
        )
        if max_seq_len is None and config.card is not None:
            max_seq_len = config.card.context_length
        self = cls(llm, plan, max_seq_len)
        if config.endpoint is not None:
            self.publishers = Publishers()
            dp = (
                int(plan.kwargs["tensor_parallel_size"])
                if plan.kwargs.get("enable_attention_dp")
                else 1
            )
            await self.publishers.start(llm, config.endpoint, plan.block_size, dp)
        return self

    # -- serving ------------------------------------------------------------------------------------

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        if self._closed:
            raise EngineFailedError("the TensorRT-LLM engine is shut down")
        from tensorrt_llm import SamplingParams
        from tensorrt_llm.sampling_params import GuidedDecodingParams

        opts = GenerationOptions.from_request(request, SUPPORTED_FIELDS)
        visible = (request.get("stop_conditions") or {}).get("stop_token_ids") or ()
        kwargs = sampling_kwargs(
            opts, visible, max_seq_len=self.max_seq_len, guided_decoding=self.plan.guided_decoding
        )
        if "guided_decoding" in kwargs:
            kwargs["guided_decoding"] = GuidedDecodingParams(**kwargs["guided_decoding"])
        if context.is_stopped():
            if not context.is_killed():
                yield {"token_ids": [], "finish_reason": "cancelled"}
            return
        try:
            params = SamplingParams(**kwargs)
            result = self._llm.generate_async(opts.prompt, sampling_params=params, streaming=True)
        except (ValueError, TypeError) as e:
            raise InvalidRequestError(first_line(e)) from None
        mapper = DeltaMapper(len(opts.prompt), visible)
        watcher = asyncio.ensure_future(_abort_when_stopped(context, result))
        try:
            async for output in _failures_as_ours(result):
                delta = mapper.delta(output)
                if mapper.finished and context.is_killed():
                    return
                if delta is not None:
                    yield delta
                if mapper.finished:
                    return
        finally:
            watcher.cancel()
            if not mapper.finished:
                # The consumer left (or the engine failed) before the end: free the slot.
                with contextlib.suppress(Exception):
                    result.abort()

    # -- shutdown ----------------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.publishers is not None:
            await self.publishers.close()
        await asyncio.to_thread(self._llm.shutdown)


async def _abort_when_stopped(context: Context, result: Any) -> None:
    await context.stopped()
    result.abort()


async def _failures_as_ours(result: Any) -> AsyncIterator[Any]:
    """TensorRT-LLM's errors while streaming: a request it rejects (ValueError) is the client's
    fault, anything else the engine's."""
    try:
        async for output in result:
            yield output
    except ValueError as e:
        raise InvalidRequestError(first_line(e)) from None
    except (RuntimeError, OSError) as e:
        raise EngineFailedError(f"TensorRT-LLM failed: {first_line(e)}") from None


__all__ = ["TrtllmEngine", "llm_arg_names"]
