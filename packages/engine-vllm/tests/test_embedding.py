"""`out=vllm --embedding` without a running vLLM: the engine is registered for `--embedding`, and
what it asks vLLM for (`dimensions`, the pooling task) is decided before vLLM sees a request."""

from __future__ import annotations

import importlib.util

import pytest

from dynamo.engines.vllm._args import DEFAULTS, engine_kwargs
from dynamo.engines.vllm._embedding import (
    FIXED_ARGS,
    VllmEmbeddingEngine,
    check_embeds,
    pooling_dimensions,
)
from dynamo.llm import EngineError, ModelType
from dynamo.llm.engine import load_embedding_engine_class
from dynamo.llm.errors import InvalidRequestError


def test_registered_for_embedding():
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(EngineError, match="pip install vllm"):
            load_embedding_engine_class("vllm")
        return
    cls = load_embedding_engine_class("vllm")
    assert cls is VllmEmbeddingEngine and cls.model_type is ModelType.Embedding


def test_the_models_own_size_needs_nothing_shortened():
    assert pooling_dimensions(None, 576, False, None) is None
    assert pooling_dimensions(576, 576, False, None) is None
    assert pooling_dimensions(576, 576, True, [64, 128]) is None


@pytest.mark.parametrize(
    ("requested", "matryoshka", "allowed", "needle"),
    [
        (64, False, None, "no Matryoshka representation"),
        (0, True, None, r"in \[1, 576\]"),
        (1000, True, None, r"in \[1, 576\]"),
        (100, True, [64, 128, 256], "Matryoshka dimensions are 64, 128, 256"),
    ],
)
def test_dimensions_the_model_cannot_return_are_refused(requested, matryoshka, allowed, needle):
    with pytest.raises(InvalidRequestError, match=needle) as e:
        pooling_dimensions(requested, 576, matryoshka, allowed)
    assert e.value.param == "dimensions"


def test_matryoshka_models_shorten():
    assert pooling_dimensions(64, 576, True, None) == 64
    assert pooling_dimensions(128, 576, True, [64, 128]) == 128


def test_a_model_that_cannot_embed_is_refused():
    check_embeds(("embed", "token_embed"), "m")
    with pytest.raises(EngineError, match=r"cannot embed with m \(its pooling tasks: classify\)"):
        check_embeds(("classify",), "m")


def test_the_embedding_engine_keeps_vllms_own_defaults():
    fields = ["model", "enable_prefix_caching", "disable_log_stats", "runner", "dtype"]
    generating = engine_kwargs("m", {}, (), {"dtype": "float32"}, fields)
    assert generating == {**DEFAULTS, "dtype": "float32", "model": "m"}
    embedding = engine_kwargs("m", {}, (), {"dtype": "float32"}, fields, defaults={})
    assert embedding == {"dtype": "float32", "model": "m"}
    assert FIXED_ARGS == {"runner": "pooling"}


def test_flags_it_cannot_honour_are_not_accepted():
    # Multi-node: vLLM's headless followers would start without the pooling runner.
    assert {"num_nodes", "node_rank", "leader_addr"}.isdisjoint(VllmEmbeddingEngine.accepted_flags)
    assert "kv_cache_block_size" not in VllmEmbeddingEngine.accepted_flags


@pytest.mark.vllm
def test_extra_engine_args_cannot_change_the_runner():
    pytest.importorskip("vllm")
    from dynamo.engines.vllm._engine import import_vllm
    from dynamo.engines.vllm._setup import engine_arguments
    from dynamo.llm import EngineConfig

    config = EngineConfig(model_name="m", model_path="/m", extra_engine_args={"runner": "generate"})
    with pytest.raises(EngineError, match="runner is set by this engine"):
        engine_arguments(config, import_vllm(), fixed=FIXED_ARGS)


@pytest.mark.vllm
def test_vllms_errors_are_ours():
    pytest.importorskip("vllm")
    from vllm.exceptions import VLLMValidationError
    from vllm.v1.engine.exceptions import EngineDeadError

    from dynamo.engines.vllm._errors import our_error
    from dynamo.llm.errors import EngineFailedError

    refused = our_error(VLLMValidationError("too\nlong", parameter="input"))
    assert isinstance(refused, InvalidRequestError)
    assert (str(refused), refused.param) == ("too long", "input")
    assert isinstance(our_error(EngineDeadError()), EngineFailedError)
    assert "vLLM failed: boom" in str(our_error(RuntimeError("boom")))
