"""`LlamaCppEngine`: a Backend engine over one `llama_cpp.Llama`, generating on a worker thread."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

from dynamo.engines.llamacpp._options import llama_kwargs, sampling_kwargs
from dynamo.llm import Context, Engine, EngineConfig, EngineError, ModelType
from dynamo.llm.threaded import stream_from_thread

log = logging.getLogger(__name__)


def _gguf_path(config: EngineConfig) -> Path:
    path = Path(config.model_path or "")
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not ggufs:
            raise EngineError(f"out=llamacpp needs a GGUF file; {path} has none")
        path = ggufs[0]
    if path.suffix != ".gguf" or not path.is_file():
        raise EngineError(f"out=llamacpp needs a GGUF file, got '{config.model_path}'")
    return path


class LlamaCppEngine(Engine):
    """Token ids in, token ids out. One request at a time, in arrival order."""

    model_type = ModelType.Backend
    requires_model = True
    accepted_flags = frozenset({"context_length", "extra_engine_args", "model_config"})
    distribution = "dynamo-engine-llamacpp"

    def __init__(self, llama: Any, n_ctx: int):
        self._llama = llama
        self._n_ctx = n_ctx
        # One thread: requests queue in FIFO order and never touch the model concurrently.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")

    @classmethod
    async def start(cls, config: EngineConfig) -> Self:
        from llama_cpp import Llama

        path = _gguf_path(config)
        kwargs = llama_kwargs(config, config.card.context_length if config.card else None)
        log.info("loading %s with llama.cpp (n_ctx=%d)", path.name, kwargs["n_ctx"])
        try:
            llama = await asyncio.to_thread(Llama, model_path=str(path), **kwargs)
        except (ValueError, RuntimeError) as e:
            raise EngineError(f"llama.cpp could not load {path.name}: {e}") from None
        return cls(llama, llama.n_ctx())

    def generate(self, request: dict[str, Any], context: Context) -> AsyncIterator[dict[str, Any]]:
        def produce(push: Any, abort: threading.Event) -> None:
            self._generate_into(request, context, abort, push)

        return stream_from_thread(self._executor, produce, "llama.cpp")

    def _generate_into(
        self, request: dict[str, Any], context: Context, abort: threading.Event, push: Any
    ) -> None:
        if abort.is_set() or context.is_stopped():
            # Cancelled while queued behind another request: skip the prefill altogether.
            push({"token_ids": [], "finish_reason": "cancelled"})
            return
        prompt = request["token_ids"]
        stop = request.get("stop_conditions") or {}
        sampling = request.get("sampling_options") or {}
        room = self._n_ctx - len(prompt)
        if room <= 0:
            push({"token_ids": [], "finish_reason": "length"})
            return
        max_tokens = min(stop.get("max_tokens") or room, room)
        eos = set() if stop.get("ignore_eos") else set(request.get("eos_token_ids") or ())
        min_tokens = stop.get("min_tokens") or 0
        if sampling.get("seed") is not None:
            self._llama.set_seed(int(sampling["seed"]))
        tokens = self._llama.generate(prompt, reset=True, **sampling_kwargs(sampling))
        for produced, token in enumerate(tokens):
            if abort.is_set() or context.is_stopped():
                push({"token_ids": [], "finish_reason": "cancelled"})
                return
            if token in eos and produced >= min_tokens:
                push({"token_ids": [], "finish_reason": "eos"})
                return
            push({"token_ids": [token]})
            if produced + 1 >= max_tokens:
                push({"token_ids": [], "finish_reason": "length"})
                return

    async def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        close = getattr(self._llama, "close", None)
        if close is not None:
            close()
