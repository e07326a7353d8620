"""Starting an engine in this process (`dynamo.frontend.local_model`): which flags reach it,
which model it loads, what its card says afterwards and how it is served."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamo.engines.echo import EchoCoreEngine, EchoFullEngine
from dynamo.frontend.flags import UsageError
from dynamo.frontend.local_model import (
    check_engine_flags,
    engine_config,
    resolve_model_arg,
    served_model,
    start_engine,
)
from dynamo.frontend.run_config import RunConfig
from dynamo.llm.model_type import ModelType


def config(**fields) -> RunConfig:
    typed = frozenset(name for name, value in fields.items() if value is not None)
    return RunConfig(input="http", explicit=typed, **fields)


def test_a_typed_engine_flag_the_engine_does_not_use_is_refused_by_name():
    with pytest.raises(UsageError, match="out=echo_full does not use --context-length"):
        check_engine_flags("echo_full", EchoFullEngine, config(context_length=512))
    check_engine_flags("echo_core", EchoCoreEngine, config(context_length=512))  # it uses it


def test_the_model_given_wins_and_an_engine_without_one_loads_none():
    assert resolve_model_arg("echo_core", EchoCoreEngine, config(model_path="m.gguf")) == "m.gguf"
    assert resolve_model_arg("echo_full", EchoFullEngine, config()) is None


def test_an_engine_that_needs_a_model_gets_the_embedded_default(smollm2_gguf):
    assert resolve_model_arg("echo_core", EchoCoreEngine, config()) == str(smollm2_gguf)


def test_the_engine_config_carries_the_flags_and_defaults_the_parallelism():
    built = engine_config(
        config(context_length=256, kv_cache_block_size=16),
        "smol",
        "m.gguf",
        None,
        distributed=True,
    )
    assert (built.model_name, built.model_path, built.context_length) == ("smol", "m.gguf", 256)
    assert built.kv_cache_block_size == 16
    assert (built.tensor_parallel_size, built.base_gpu_id, built.num_nodes) == (1, 0, 1)
    assert built.distributed is True


async def test_a_started_engine_names_itself_after_its_card_and_the_card_says_what_it_runs(
    smollm2_gguf,
):
    run = config(model_path=str(smollm2_gguf), context_length=512, tool_call_parser="hermes")
    started = await start_engine("echo_core", run)
    try:
        assert started.cls is EchoCoreEngine
        assert started.model_path == str(smollm2_gguf)
        assert started.card is not None
        assert started.name == started.card.display_name
        assert started.card.context_length == 512
        # The parser chosen here travels on the card to out=dyn frontends.
        assert started.card.runtime_config["tool_call_parser"] == "hermes"
        model = served_model(started, run)
        assert model.name == started.name
    finally:
        await started.engine.close()


async def test_model_name_wins_and_an_engine_without_a_model_is_named_after_itself():
    started = await start_engine("echo_full", config())
    try:
        assert (started.name, started.card, started.model_path) == ("echo_full", None, None)
        assert ModelType.Completion in started.cls.also_serves
    finally:
        await started.engine.close()
    named = await start_engine("echo_full", config(model_name="mine"))
    try:
        assert named.name == "mine"
    finally:
        await named.engine.close()


async def test_a_chat_template_is_refused_for_an_engine_that_renders_its_own_prompts(
    tmp_path: Path,
):
    template = tmp_path / "t.jinja"
    template.write_text("{{ messages[0]['content'] }}")
    with pytest.raises(UsageError, match="out=echo_full renders its own prompts"):
        await start_engine("echo_full", config(chat_template=str(template)))
