"""`LlamaCppEmbeddingEngine`: `out=llamacpp --embedding`, an Embedding engine over llama.cpp.

A `llama_cpp.Llama` of its own, made with `embedding=True` and the model's pooling (or the one
`--extra-engine-args '{"pooling_type": N}'` sets). It takes our token ids, not text, so it runs
the same batching `Llama.embed` runs, over ids: each input a sequence, decoded, its pooled
vector read with `llama_get_embeddings_seq` and L2-normalized, as llama.cpp's own server does for
OpenAI-style embeddings. `Llama.embed(text, normalize=True)` gives the same vectors for the same
tokens (the tests check it).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

from dynamo.engines.llamacpp._engine import _gguf_path
from dynamo.engines.llamacpp._options import default_threads
from dynamo.llm import Context, Engine, EngineConfig, EngineError, ModelType
from dynamo.llm.engine import EngineRuntime
from dynamo.llm.errors import InvalidRequestError

log = logging.getLogger(__name__)

#: Upper bound on the default context (the longest input), as for generation.
DEFAULT_MAX_CONTEXT = 8192
#: `Llama(...)` arguments this engine sets itself.
_OWNED = {"self", "model_path", "kwargs", "embedding", "vocab_only"}

#: llama.cpp's `enum llama_pooling_type` values that give one vector per sequence.
POOLING_NAMES = {1: "mean", 2: "cls", 3: "last"}
_POOLING_HELP = "1 mean, 2 cls, 3 last"


def embedding_kwargs(config: EngineConfig) -> dict[str, Any]:
    """`llama_cpp.Llama(...)` keyword arguments: a context (and batch) as long as the longest
    input it takes, the machine's physical cores, and `--extra-engine-args` (`pooling_type`,
    `n_gpu_layers`, ...), each checked against `Llama`'s own parameters."""
    from llama_cpp import Llama

    extra = dict(config.extra_engine_args)
    known = set(inspect.signature(Llama.__init__).parameters) - _OWNED
    unknown = sorted(set(extra) - known)
    if unknown:
        raise EngineError(
            f"--extra-engine-args: llama_cpp.Llama does not take {', '.join(unknown)} "
            "(see help(llama_cpp.Llama))"
        )
    model_context = config.card.context_length if config.card else None
    n_ctx = config.context_length or min(model_context or DEFAULT_MAX_CONTEXT, DEFAULT_MAX_CONTEXT)
    # One decode per input, each input whole: the batch must hold the longest input.
    kwargs: dict[str, Any] = {"n_ctx": n_ctx, "n_batch": n_ctx, "n_ubatch": n_ctx, "verbose": False}
    threads = default_threads()
    if threads:
        kwargs["n_threads"] = threads
    return {**kwargs, **extra, "embedding": True}


def normalize(vector: list[float]) -> list[float]:
    """L2 normalization, as llama.cpp (and llama-cpp-python's `normalize=True`) does it."""
    norm = math.sqrt(sum(v * v for v in vector))
    return vector if norm == 0.0 else [v / norm for v in vector]


def check_pooling(pooling: int, model: str) -> None:
    """Refuse a context without one vector per input: per-token embeddings (none) or a
    reranker's scores (rank) are not what `/v1/embeddings` returns."""
    if pooling not in POOLING_NAMES:
        raise EngineError(
            f"{model} has no pooling that gives one vector per input (llama.cpp pooling type "
            f"{pooling}); choose one with --extra-engine-args '{{\"pooling_type\": N}}' "
            f"({_POOLING_HELP})"
        )


class LlamaCppEmbeddingEngine(Engine):
    """Token ids in, one pooled, normalized vector per input out. One request at a time."""

    model_type = ModelType.Embedding
    requires_model = True
    accepted_flags = frozenset({"context_length", "extra_engine_args", "model_config"})

    def __init__(self, llama: Any):
        self._llama = llama
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp-embed")

    @classmethod
    async def start(cls, config: EngineConfig) -> Self:
        from llama_cpp import Llama

        path = _gguf_path(config)
        kwargs = embedding_kwargs(config)
        log.info("loading %s with llama.cpp for embeddings (n_ctx=%d)", path.name, kwargs["n_ctx"])
        try:
            llama = await asyncio.to_thread(Llama, model_path=str(path), **kwargs)
        except (ValueError, RuntimeError) as e:
            raise EngineError(f"llama.cpp could not load {path.name}: {e}") from None
        try:
            check_pooling(int(llama.pooling_type()), path.name)
        except EngineError:
            llama.close()
            raise
        log.info("embedding with %s pooling", POOLING_NAMES[int(llama.pooling_type())])
        return cls(llama)

    def runtime(self) -> EngineRuntime:
        """The frontend checks inputs against what this engine holds: one batch."""
        return EngineRuntime(context_length=self._llama.n_batch)

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        token_ids: list[list[int]] = request["token_ids"]
        if context.is_stopped():
            return
        loop = asyncio.get_running_loop()
        vectors = await loop.run_in_executor(self._executor, self.embed_ids, token_ids)
        total = sum(map(len, token_ids))
        yield {"embeddings": vectors, "prompt_tokens": total, "total_tokens": total}

    def embed_ids(self, token_ids: list[list[int]]) -> list[list[float]]:
        """`Llama.embed`'s loop, over token ids (runs on the engine's thread)."""
        import llama_cpp

        llama = self._llama
        n_batch = llama.n_batch
        n_seq_max = llama.context_params.n_seq_max
        n_embd = llama.n_embd()
        batch = llama._batch  # the Llama's own batch, as `Llama.embed` uses it
        ctx = llama._ctx
        vectors: list[list[float]] = []

        def decode(sizes: list[int]) -> None:
            ctx.kv_cache_clear()
            ctx.decode(batch)
            batch.reset()
            for i in range(len(sizes)):
                ptr = llama_cpp.llama_get_embeddings_seq(ctx.ctx, i)
                vectors.append(normalize(ptr[:n_embd]))

        for i, tokens in enumerate(token_ids):
            if len(tokens) > n_batch:
                raise InvalidRequestError(
                    f"input[{i}] has {len(tokens)} tokens; this engine embeds at most {n_batch}",
                    param="input",
                    code="context_length_exceeded",
                )
        batch.reset()
        sizes: list[int] = []
        used = 0
        try:
            for tokens in token_ids:
                if used + len(tokens) > n_batch or len(sizes) >= n_seq_max:
                    decode(sizes)
                    sizes, used = [], 0
                batch.add_sequence(tokens, len(sizes), True)
                sizes.append(len(tokens))
                used += len(tokens)
            decode(sizes)
        finally:
            ctx.kv_cache_clear()
            llama.reset()
        return vectors

    async def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._llama.close()
