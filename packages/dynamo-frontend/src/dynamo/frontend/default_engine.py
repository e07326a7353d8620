"""Which engine `dynamo-run` uses when `out=` is omitted.

The seed makes mistral.rs the default, and vLLM where `dynamo-run` comes from pip (the Python
wheel ships the vLLM engine; its quickstart is `dynamo run Qwen/Qwen3-0.6B`). Ours, by what the
model is, because no single engine loads both kinds:

- a GGUF model (a `.gguf` file, a folder holding one, a repo id `org/name:QUANT` or one whose name
  ends in `GGUF`, or no model at all: the built-in SmolLM2 GGUF): llama.cpp, then mistral.rs
  (llama.cpp is about ten times faster on CPU, docs/decisions.md); vLLM loads no GGUF since 0.24;
- any other model (an HF repo id or a folder of safetensors): vLLM, then mistral.rs; llama.cpp
  reads GGUF files only.

An engine counts as installed when its entry point is there and the library it runs on imports
(`Engine.library`), so a `dynamo-engine-vllm` without vLLM falls through to the next one.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from dynamo.frontend.flags import UsageError
from dynamo.llm.engine import installed_engines, load_engine_class
from dynamo.llm.errors import EngineError

log = logging.getLogger(__name__)

GGUF_ENGINES = ("llamacpp", "mistralrs")
HF_ENGINES = ("vllm", "mistralrs")
_GGUF_REPO = re.compile(r"(?i)gguf$")


def is_gguf_model(model: str | None) -> bool:
    """Whether `model` names a GGUF model (None: the built-in default, which is one)."""
    if not model:
        return True
    path = Path(model.removeprefix("hf://")).expanduser()
    if path.suffix.lower() == ".gguf":
        return True
    if path.is_dir():
        return any(path.glob("*.gguf")) and not any(path.glob("*.safetensors"))
    name, _, quant = model.removeprefix("hf://").partition(":")
    return bool(quant) or bool(_GGUF_REPO.search(name))


def _usable(name: str, installed: frozenset[str]) -> bool:
    if name not in installed:
        return False
    try:
        load_engine_class(name)
    except EngineError as e:
        log.debug("default engine: skipping %s (%s)", name, e)
        return False
    return True


def default_engine(model: str | None) -> str:
    """The first usable engine for `model`, or a usage error naming what to install."""
    gguf = is_gguf_model(model)
    order = GGUF_ENGINES if gguf else HF_ENGINES
    installed = frozenset(installed_engines())
    for name in order:
        if _usable(name, installed):
            log.info("no out= given: using the %s engine", name)
            return name
    kind = "a GGUF model" if gguf else "an HF model"
    packages = " (or ".join(f"dynamo-engine-{n}" for n in order) + ")"
    raise UsageError(
        f"no engine for {kind} is installed: pip install {packages}, or choose one with out=ENGINE"
    )


__all__ = ["GGUF_ENGINES", "HF_ENGINES", "default_engine", "is_gguf_model"]
