"""`VllmEmbeddingEngine`: `out=vllm --embedding`, an Embedding engine on vLLM's pooling runner.

An `AsyncLLM` started with `runner="pooling"`: a model that is an embedding model serves as it
is, and a generative one is converted by vLLM (its `as_embedding_model` adapter, "last token"
pooling for causal models), as `vllm serve --runner pooling` does. `--extra-engine-args` may set
vLLM's `convert` or `pooler_config` (pooling type, normalization) like any other field.

Each input (our frontend's token ids) is one `AsyncLLM.encode` request with the task "embed",
all of a request's inputs at once (vLLM batches them). The vector is vLLM's pooler output as
it is: normalized when the model's pooler configuration says so (vLLM's default for embeddings,
`use_activation`), exactly what `LLM.embed` returns. `dimensions` goes to vLLM when the model
has Matryoshka embeddings (its config's `matryoshka_dimensions` / `is_matryoshka`) and is refused
otherwise, unless it is the model's own size.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Self

from dynamo.engines.vllm._engine import _token_prompt
from dynamo.engines.vllm._errors import our_error
from dynamo.engines.vllm._setup import (
    engine_arguments,
    import_vllm_off_loop,
    one_line,
    vllm_config,
)
from dynamo.llm import Context, Engine, EngineConfig, EngineError, ModelType
from dynamo.llm.errors import EngineFailedError, InvalidRequestError, ServiceUnavailableError

log = logging.getLogger(__name__)

#: `AsyncEngineArgs` this engine sets; `--extra-engine-args` may not change them.
FIXED_ARGS = {"runner": "pooling"}
#: vLLM's own defaults for the rest: prefix caching and statistics are the generating engine's
#: choices, for KV routing, which embeddings do not use.
DEFAULT_ARGS: dict[str, Any] = {}


def pooling_dimensions(
    requested: int | None,
    size: int,
    matryoshka: bool,
    allowed: Sequence[int] | None,
) -> int | None:
    """The `dimensions` to ask vLLM for: None for the model's own size; the requested size on a
    Matryoshka model (among its `allowed` sizes, when it lists them); an `InvalidRequestError`
    naming `dimensions` for anything the model cannot return."""
    if requested is None or requested == size:
        return None
    if not matryoshka:
        raise InvalidRequestError(
            f"this model returns {size}-dimensional embeddings and has no Matryoshka "
            "representation to shorten them; leave `dimensions` out",
            param="dimensions",
        )
    if not 1 <= requested <= size:
        raise InvalidRequestError(
            f"dimensions must be in [1, {size}] for this model, got {requested}",
            param="dimensions",
        )
    if allowed and requested not in allowed:
        raise InvalidRequestError(
            f"this model's Matryoshka dimensions are {', '.join(map(str, allowed))}; "
            f"got {requested}",
            param="dimensions",
        )
    return requested


def check_embeds(tasks: Sequence[str], model: str) -> None:
    """Refuse a model that vLLM's pooling runner cannot embed with (a classifier, a reward
    model): `/v1/embeddings` needs the task "embed"."""
    if "embed" not in tasks:
        raise EngineError(
            f"vLLM cannot embed with {model} (its pooling tasks: {', '.join(tasks) or 'none'}); "
            'for a generative model try --extra-engine-args \'{"convert": "embed"}\''
        )


class VllmEmbeddingEngine(Engine):
    """Token ids in, one pooled vector per input out; vLLM batches concurrent inputs."""

    model_type = ModelType.Embedding
    requires_model = True
    accepted_flags = frozenset(
        {"context_length", "tensor_parallel_size", "base_gpu_id", "extra_engine_args"}
    )
    library = "vllm"

    def __init__(self, llm: Any, model_config: Any) -> None:
        self._llm: Any = llm
        self.max_model_len: int = model_config.max_model_len
        self.size: int = model_config.embedding_size
        self.matryoshka: bool = bool(model_config.is_matryoshka)
        self.matryoshka_dimensions: list[int] | None = model_config.matryoshka_dimensions
        self._ids = itertools.count()
        self._closed = False

    @classmethod
    async def start(cls, config: EngineConfig) -> Self:
        vllm = await import_vllm_off_loop()
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        model, kwargs = engine_arguments(config, vllm, fixed=FIXED_ARGS, defaults=DEFAULT_ARGS)
        vc = await vllm_config(kwargs)
        log.info("starting vLLM %s on %s for embeddings", vllm.__version__, model)
        try:
            # No local name for the AsyncLLM: this frame is kept after it returns (seen: the
            # AsyncLLM outlived `close`, held only by it), and the AsyncLLM's __del__ would
            # then shut down again at interpreter exit and fail on torn-down globals.
            engine = cls(
                await asyncio.to_thread(
                    AsyncLLM.from_vllm_config, vc, usage_context=UsageContext.OPENAI_API_SERVER
                ),
                vc.model_config,
            )
        except Exception as e:
            raise EngineError(f"vLLM could not start: {one_line(e)}") from None
        try:
            check_embeds(await engine._llm.get_supported_tasks(), model)
        except EngineError:
            await engine.close()
            raise
        if config.card is not None:
            # The frontend checks inputs against what vLLM takes.
            config.card.context_length = engine.max_model_len
        pooler = vc.model_config.pooler_config
        log.info(
            "vLLM embeds: %d dimensions%s, max_model_len %d, pooler %s",
            engine.size,
            " (Matryoshka)" if engine.matryoshka else "",
            engine.max_model_len,
            pooler,
        )
        return engine

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        if self._closed:
            raise EngineFailedError("the vLLM engine is shut down")
        from vllm import PoolingParams

        token_ids: list[list[int]] = request["token_ids"]
        dimensions = pooling_dimensions(
            request.get("dimensions"), self.size, self.matryoshka, self.matryoshka_dimensions
        )
        params = PoolingParams(task="embed", dimensions=dimensions)
        if context.is_stopped():
            return
        base = f"{context.id()}-{next(self._ids)}"
        tasks = [
            asyncio.ensure_future(self._embed(ids, params, f"{base}-{i}"))
            for i, ids in enumerate(token_ids)
        ]
        stopped = asyncio.ensure_future(context.stopped())
        try:
            embedding = asyncio.gather(*tasks)
            await asyncio.wait({embedding, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not embedding.done():
                return  # stopped
            vectors = embedding.result()  # or the first input's error
        finally:
            stopped.cancel()
            # Inputs still running (stopped, failed beside another, or the caller left): a
            # cancelled `encode` aborts its vLLM request as it unwinds.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        total = sum(map(len, token_ids))
        yield {"embeddings": vectors, "prompt_tokens": total, "total_tokens": total}

    async def _embed(self, token_ids: list[int], params: Any, request_id: str) -> list[float]:
        """One input's vector (a cancelled call aborts the request in vLLM)."""
        result = None
        try:
            async for out in self._llm.encode(_token_prompt(token_ids), params, request_id):
                result = out
        except Exception as e:
            raise our_error(e) from None
        if result is None:
            raise EngineFailedError("vLLM returned no embedding")
        if result.error is not None:
            message = f"vLLM: {result.error.message}"
            if result.error.retryable:
                raise ServiceUnavailableError(message)
            raise EngineFailedError(message)
        return result.outputs.data.tolist()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        llm, self._llm = self._llm, None
        await asyncio.to_thread(llm.shutdown)
        del llm  # collected now, while the interpreter is whole (as the generating engine)


__all__ = ["VllmEmbeddingEngine", "check_embeds", "pooling_dimensions"]
