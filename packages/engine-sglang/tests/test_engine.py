"""The engine class without SGLang: how it plugs in, and the error when SGLang is missing."""

from __future__ import annotations

import importlib.util
import socket

import pytest

from dynamo.engines.sglang import SGLangEngine
from dynamo.engines.sglang._engine import free_port_range
from dynamo.llm import EngineConfig, EngineError, ModelType
from dynamo.llm.engine import installed_engines, load_engine_class

HAS_SGLANG = importlib.util.find_spec("sglang") is not None


def test_entry_point_names_the_engine() -> None:
    assert installed_engines()["sglang"].load() is SGLangEngine
    assert SGLangEngine.model_type is ModelType.Backend
    # The entry point ships in the engine's own distribution (the pip install hints name it).
    assert installed_engines()["sglang"].dist.name == "dynamo-engine-sglang"
    assert {"tensor_parallel_size", "num_nodes", "node_rank", "leader_addr", "base_gpu_id"} <= (
        SGLangEngine.accepted_flags
    )


@pytest.mark.skipif(HAS_SGLANG, reason="SGLang is installed here")
async def test_without_sglang_start_says_what_to_install() -> None:
    with pytest.raises(
        EngineError, match="out=sglang needs sglang, which is not installed: pip install sglang"
    ):
        await SGLangEngine.start(EngineConfig(model_name="m", model_path="/nowhere"))


def test_free_port_range_is_free() -> None:
    base = free_port_range(3)
    for port in range(base, base + 3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


@pytest.mark.skipif(HAS_SGLANG, reason="the library is installed here")
def test_a_missing_library_is_named_before_any_model_loads() -> None:
    with pytest.raises(
        EngineError, match="out=sglang needs sglang, which is not installed: pip install sglang"
    ):
        load_engine_class("sglang")


def test_pip_install_brings_sglang() -> None:
    """The library is a real dependency (the workspace only leaves it out of its own lock)."""
    from importlib.metadata import requires

    assert any(
        r.replace(" ", "").startswith("sglang>=") for r in requires("dynamo-engine-sglang") or []
    )
