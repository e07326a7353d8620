"""`out=vllm --embedding` without a running vLLM: the engine is registered for `--embedding`, and
what it asks vLLM for (`dimensions`, the pooling task) is decided before vLLM sees a request."""

from __future__ import annotations

import asyncio
import importlib.util
from types import SimpleNamespace

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
from dynamo.runtime.context import Context


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


class Encodings:
    """Stands in for `AsyncLLM.encode` where a real vLLM cannot be made slow or failing on
    purpose: each input's request runs until cancelled (vLLM aborts a cancelled `encode`), or
    fails when its request id ends with `fail`."""

    def __init__(self, inputs: int, fail: str | None = None) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.fail = fail
        self.inputs = inputs
        self.all_started = asyncio.Event()

    async def encode(self, prompt, params, request_id):
        self.started.append(request_id)
        if len(self.started) == self.inputs:
            self.all_started.set()
        if self.fail is not None and request_id.endswith(self.fail):
            raise RuntimeError("this input broke")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(request_id)
            raise
        yield  # pragma: no cover - never reached


def engine_on(encodings: Encodings) -> VllmEmbeddingEngine:
    config = SimpleNamespace(
        max_model_len=64, embedding_size=4, is_matryoshka=False, matryoshka_dimensions=None
    )
    return VllmEmbeddingEngine(encodings, config)


@pytest.mark.vllm
async def test_a_stopped_request_cancels_every_input():
    pytest.importorskip("vllm")
    encodings = Encodings(3)
    context = Context()
    stream = engine_on(encodings).generate({"token_ids": [[1], [2], [3]]}, context)
    first = asyncio.ensure_future(anext(stream, None))
    await asyncio.wait_for(encodings.all_started.wait(), 5)
    context.stop_generating()
    assert await asyncio.wait_for(first, 5) is None
    assert sorted(encodings.cancelled) == sorted(encodings.started)


@pytest.mark.vllm
async def test_one_failed_input_fails_the_request_and_cancels_the_rest():
    pytest.importorskip("vllm")
    from dynamo.llm.errors import EngineFailedError

    encodings = Encodings(3, fail="-1")
    stream = engine_on(encodings).generate({"token_ids": [[1], [2], [3]]}, Context())
    with pytest.raises(EngineFailedError, match="this input broke"):
        await asyncio.wait_for(anext(stream), 5)
    assert len(encodings.started) == 3 and len(encodings.cancelled) == 2
