"""One llama.cpp model and context with a KV stream per slot, through llama-cpp-python's
low-level (ctypes) API.

The context is made with `n_seq_max = n_parallel` and `kv_unified = false`: each sequence id has
its own KV stream of `n_ctx` cells, so a request's cells sit at the same places, in the same
order, whatever else is running or ran before. With a unified cache a sequence's cells land
wherever free cells are, and attention sums them in another order: greedy output could then
depend on the other requests (docs/decisions.md, "llama.cpp batching").

Everything here except `load` is called from the engine's one decode thread.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import llama_cpp

from dynamo.engines.llamacpp._options import (
    EngineSettings,
    available_memory,
    kv_bytes_per_token,
    parallel_for_memory,
)
from dynamo.llm.errors import EngineError

log = logging.getLogger(__name__)


def _set_llama_log_level(verbose: bool) -> None:
    """llama.cpp prints through llama-cpp-python's log callback, which prints everything unless
    its logger's level says otherwise: errors only, unless `verbose`."""
    from llama_cpp import _logger

    _logger.set_verbose(verbose)


def _parallel_from_machine(model: Any, settings: EngineSettings, params: Any) -> int:
    """The default slots for this model on this machine (`parallel_for_memory`), at most one
    per token of a decode step."""
    per_token = kv_bytes_per_token(
        llama_cpp.llama_model_n_layer(model),
        llama_cpp.llama_model_n_embd(model),
        llama_cpp.llama_model_n_head(model),
        llama_cpp.llama_model_n_head_kv(model),
        settings.context_params.get("type_k", params.type_k),
        settings.context_params.get("type_v", params.type_v),
    )
    available = available_memory()
    n_parallel = min(
        settings.n_batch,
        parallel_for_memory(
            per_token * settings.n_ctx, llama_cpp.llama_model_size(model), available
        ),
    )
    log.info(
        "n_parallel %d from the machine: %s available, %.0f MiB of KV cache per slot",
        n_parallel,
        "unknown memory" if available is None else f"{available / 2**30:.1f} GiB",
        per_token * settings.n_ctx / 2**20,
    )
    return n_parallel


class NativeModel:
    """The model, its vocabulary, the context, its memory and one reusable batch."""

    def __init__(self, model: Any, ctx: Any, n_ctx: int, n_parallel: int, n_batch: int):
        # ctypes handles (Any: the bindings type them as optional pointers).
        self.model: Any = model
        self.ctx: Any = ctx
        self.vocab: Any = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.memory: Any = llama_cpp.llama_get_memory(ctx)
        #: Each slot's context: what the user asked for, within what llama.cpp allocated.
        self.n_ctx = min(n_ctx, llama_cpp.llama_n_ctx_seq(ctx))
        self.n_parallel = n_parallel
        self.n_batch = n_batch
        self.batch: Any = llama_cpp.llama_batch_init(n_batch, 0, 1)

    @classmethod
    def load(cls, path: Path, settings: EngineSettings) -> NativeModel:
        """Load the GGUF file and make the context (blocking: call it off the event loop)."""
        _set_llama_log_level(settings.verbose)
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        for name, value in settings.model_params.items():
            setattr(model_params, name, value)
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
        if not model:
            raise EngineError(f"llama.cpp could not load {path.name}")
        params = llama_cpp.llama_context_default_params()
        n_parallel = settings.n_parallel or _parallel_from_machine(model, settings, params)
        # llama.cpp's default (auto: on where the backend has it). On the CPU it is also what
        # makes a sequence's logits independent of how its prompt was chunked and of what else
        # is in the batch: without it, a one-token chunk takes another attention kernel.
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
        for name, value in settings.context_params.items():
            setattr(params, name, value)
        params.n_ctx = settings.n_ctx * n_parallel
        params.n_seq_max = n_parallel
        params.kv_unified = False
        params.n_batch = settings.n_batch
        params.n_ubatch = min(params.n_ubatch, settings.n_batch)
        params.embeddings = False
        ctx = llama_cpp.llama_init_from_model(model, params)
        if not ctx:
            llama_cpp.llama_model_free(model)
            raise EngineError(
                f"llama.cpp could not make a context of {n_parallel} x "
                f"{settings.n_ctx} tokens for {path.name} (too little memory? lower n_parallel "
                f"or the context length with --extra-engine-args)"
            )
        return cls(model, ctx, settings.n_ctx, n_parallel, settings.n_batch)

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    @functools.cached_property
    def eog_tokens(self) -> frozenset[int]:
        """Every end-of-generation token of the vocabulary (`<|endoftext|>` as well as the chat
        template's end of turn): the only tokens a completed grammar lets through."""
        return frozenset(t for t in range(self.n_vocab) if self.is_eog(t))

    def clear_seq(self, seq: int, start: int = 0) -> None:
        """Drop the KV cells of sequence `seq` from position `start` on."""
        llama_cpp.llama_memory_seq_rm(self.memory, seq, start, -1)

    def seq_length(self, seq: int) -> int:
        """Positions sequence `seq` holds in the KV cache (0 when empty)."""
        return llama_cpp.llama_memory_seq_pos_max(self.memory, seq) + 1

    def close(self) -> None:
        if self.batch is not None:
            llama_cpp.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            llama_cpp.llama_model_free(self.model)
            self.model = None
