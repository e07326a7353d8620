"""Mapping Dynamo's options and OpenAI requests onto the `mistralrs` Python API."""

from __future__ import annotations

import inspect
import os
from functools import cache
from pathlib import Path
from typing import Any

from dynamo.llm.engine import EngineConfig
from dynamo.llm.errors import EngineError

DEFAULT_MAX_SEQS = 16
_OWNED = {"which", "token_source"}


@cache
def _runner_parameters() -> frozenset[str]:
    import mistralrs

    return frozenset(inspect.signature(mistralrs.Runner).parameters) - _OWNED


def which(config: EngineConfig) -> Any:
    """`mistralrs.Which` for a GGUF file (optionally with an HF tokenizer folder) or an HF folder."""
    import mistralrs

    path = Path(config.model_path or "")
    tokenizer_folder = config.model_config  # --model-config: the HF folder with tokenizer.json
    if path.is_dir() and not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs:
            path = ggufs[0]
    # mistralrs's own stub declares `Which` an Enum, which makes its variants enum members to a
    # type checker; at run time they are the classes to call.
    variants: Any = mistralrs.Which
    if path.suffix == ".gguf" and path.is_file():
        return variants.GGUF(
            quantized_model_id=str(path.parent),
            quantized_filename=path.name,
            tok_model_id=tokenizer_folder,
        )
    if path.is_dir():
        return variants.Plain(model_id=str(path))
    raise EngineError(
        f"out=mistralrs needs a GGUF file or an HF model folder, got '{config.model_path}'"
    )


def runner_kwargs(config: EngineConfig) -> dict[str, Any]:
    """`mistralrs.Runner(...)` keyword arguments (besides `which`)."""
    extra = dict(config.extra_engine_args)
    unknown = sorted(set(extra) - _runner_parameters())
    if unknown:
        raise EngineError(
            f"--extra-engine-args: mistralrs.Runner does not take {', '.join(unknown)}"
        )
    return {
        "token_source": "env:HF_TOKEN" if os.environ.get("HF_TOKEN") else "none",
        "max_seqs": DEFAULT_MAX_SEQS,
        **extra,
    }


def _stops(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def chat_request_kwargs(body: dict[str, Any], model: str) -> dict[str, Any]:
    """Keyword arguments for `mistralrs.ChatCompletionRequest` / `CompletionRequest` from an
    OpenAI request body (root-level extensions win over `nvext`, as in the frontend)."""
    nvext = body.get("nvext") or {}

    def ext(name: str) -> Any:
        return body.get(name) if body.get(name) is not None else nvext.get(name)

    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    kwargs = {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "top_k": ext("top_k"),
        "min_p": ext("min_p"),
        "presence_penalty": body.get("presence_penalty"),
        "frequency_penalty": body.get("frequency_penalty"),
        "repetition_penalty": ext("repetition_penalty"),
        "stop_seqs": _stops(body.get("stop")),
        "ignore_eos": bool(ext("ignore_eos")),
    }
    return {k: v for k, v in kwargs.items() if v is not None}
