"""The engine contract: what an `out=` engine implements, and how `dynamo-run` finds and starts it.

An engine package registers a class in the `dynamo.engines` entry-point group; the entry point's
name is the `out=` value. The class only does inference; registration, serving, cancellation
plumbing and shutdown belong to the caller (the frontend in-process, or the worker behind
`in=dyn://`).

    class MyEngine(Engine):
        model_type = ModelType.Backend
        requires_model = True
        accepted_flags = frozenset({"context_length"})
        features = frozenset({Feature.TEMPERATURE, Feature.TOP_P, Feature.LOGPROBS})

        @classmethod
        async def start(cls, config: EngineConfig) -> "MyEngine": ...
        async def generate(self, request: dict, context: Context) -> AsyncIterator[dict]: ...
        def runtime(self) -> EngineRuntime: ...          # what it runs with (optional)
        async def attach(self, publishers) -> None: ...   # a worker's publishers (optional)
        async def close(self) -> None: ...

`generate` takes a plain dict: a `PreprocessedRequest` for Backend engines (and yields
`LLMEngineOutput` delta dicts: `{"token_ids": [...], "finish_reason": ...}`), or an OpenAI
request for Chat/Completion engines (and yields OpenAI stream chunk dicts).

Two things an engine never does itself, so that one owner does each for every engine:

- **It never edits the model card.** It declares what it actually runs with (`runtime()`: its
  context length, KV block size, capacity), and whoever built the card puts that on it
  (`EngineRuntime.apply_to`, called where `dynamo-run` loads the card), as upstream's workers
  hand `register_llm` a `ModelRuntimeConfig`.
- **It never instantiates publishers** (upstream's rule). A worker (`in=dyn://`) knows the
  served model's namespace, component and instance; it builds the KV-event and load publishers
  that `runtime()` asks for and hands them over with `attach`
  (`dynamo.llm.kv.engine_publishers`). In process nothing is attached: no router reads them.
"""

from __future__ import annotations

import abc
import importlib
import importlib.util
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

from dynamo.llm.errors import EngineError
from dynamo.llm.features import UNDECLARED, Feature
from dynamo.llm.model_type import ModelType
from dynamo.runtime.context import Context

if TYPE_CHECKING:
    from dynamo.llm.kv.engine_publishers import EnginePublishers
    from dynamo.llm.model_card import ModelDeploymentCard

ENTRY_POINT_GROUP = "dynamo.engines"
#: The KV cache block size in tokens when `--kv-cache-block-size` is not given (upstream's).
DEFAULT_KV_CACHE_BLOCK_SIZE = 16
#: Engines of model type `Embedding` (`dynamo-run out=NAME --embedding`), by the same `out=` name
#: as the engine package's generation engine. An entry point here names an `Engine` subclass with
#: `model_type = ModelType.Embedding` whose `generate` takes a `PreprocessedEmbeddingRequest` dict
#: and yields one `EmbeddingsEngineOutput` dict (`dynamo.llm.protocols.embeddings`).
EMBEDDING_ENTRY_POINT_GROUP = "dynamo.embedding_engines"

# Flags of `dynamo-run` that an engine may or may not use. A flag the user set that is not in the
# engine's `accepted_flags` is an error, not silently ignored.
ENGINE_FLAGS = frozenset(
    {
        "context_length",
        "tensor_parallel_size",
        "base_gpu_id",
        "num_nodes",
        "node_rank",
        "leader_addr",
        "extra_engine_args",
        "kv_cache_block_size",
        "model_config",
    }
)


@dataclass(frozen=True)
class EngineConfig:
    """Everything `dynamo-run` knows that an engine may need to start. Frozen: an engine reads
    it and derives what it needs (`dataclasses.replace` for a changed copy)."""

    model_name: str
    card: ModelDeploymentCard | None = None
    model_path: str | None = None
    #: `--model-config`: an HF folder with the tokenizer and template, for a GGUF file.
    model_config: str | None = None
    context_length: int | None = None
    tensor_parallel_size: int = 1
    base_gpu_id: int = 0
    num_nodes: int = 1
    node_rank: int = 0
    leader_addr: str | None = None
    #: `--kv-cache-block-size`, or None when it was not given (the engine then uses its own,
    #: else `DEFAULT_KV_CACHE_BLOCK_SIZE`): an explicit 16 is not "unset".
    kv_cache_block_size: int | None = None
    extra_engine_args: dict[str, Any] = field(default_factory=dict)
    #: True under `in=dyn://`: a worker will `attach` publishers after `start`, so an engine whose
    #: library reports KV events or statistics only when told so at start-up (vLLM, SGLang,
    #: TensorRT-LLM) turns them on. The engine builds no publisher itself.
    distributed: bool = False


@dataclass(frozen=True, slots=True)
class EngineRuntime:
    """What a started engine actually runs with, declared by the engine (`Engine.runtime`).

    Two owners read it. Where the card is built, `apply_to` puts it on the card: routers hash
    KV blocks with the card's `kv_cache_block_size`, the frontend checks prompts against its
    `context_length`, admission control reads `runtime_config["max_num_seqs"]`. A worker builds
    the publishers it asks for: one KV event publisher per data-parallel rank when `kv_events`,
    and a load publisher when `load_metrics` (`dynamo.llm.kv.engine_publishers`).
    None means "the card's value stands" (the engine has no say, or keeps the model's)."""

    context_length: int | None = None
    kv_cache_block_size: int | None = None
    #: Upstream's `ModelRuntimeConfig` entries (`max_num_seqs`, `max_num_batched_tokens`, ...).
    runtime_config: Mapping[str, Any] = field(default_factory=dict)
    #: The engine emits KV cache events (one stream per data-parallel rank), hashed with
    #: `kv_cache_block_size` blocks.
    kv_events: bool = False
    data_parallel_size: int = 1
    #: The engine reports its load (`ForwardPassMetrics`).
    load_metrics: bool = False

    def __post_init__(self) -> None:
        if self.kv_events and self.kv_cache_block_size is None:
            raise ValueError("an engine that emits KV events must say its kv_cache_block_size")
        if self.data_parallel_size < 1:
            raise ValueError(f"data_parallel_size must be >= 1, got {self.data_parallel_size}")

    @property
    def publishes(self) -> bool:
        """Whether a worker must build publishers for this engine."""
        return self.kv_events or self.load_metrics

    def apply_to(self, card: ModelDeploymentCard) -> None:
        """Make `card` say what the engine runs with (see the class docstring)."""
        if self.context_length is not None:
            card.context_length = self.context_length
        if self.kv_cache_block_size is not None:
            card.kv_cache_block_size = self.kv_cache_block_size
        card.runtime_config.update(self.runtime_config)


class AsyncEngine(Protocol):
    """The one engine stream contract: anything that streams responses for a request dict. An
    `Engine`, a `RouterEngine` (the network), and `Migration` around one all are one."""

    def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]: ...


class Engine(abc.ABC):
    """Base class for every `out=` engine (an `AsyncEngine` that starts, serves and closes)."""

    model_type: ClassVar[ModelType]
    #: Other request kinds a Chat/Completion engine also takes (echo_full serves both).
    also_serves: ClassVar[frozenset[ModelType]] = frozenset()
    #: False for engines that need no model at all (echo_full, which only needs a name).
    requires_model: ClassVar[bool] = True
    #: The `dynamo-run` flags this engine honours, by their `EngineConfig` field name.
    accepted_flags: ClassVar[frozenset[str]] = frozenset()
    #: The request features this engine honours (`dynamo.llm.features`); the frontend refuses
    #: requests that need others. An instance may narrow it (a model without a grammar backend),
    #: so it is declared as an attribute, not a ClassVar: the class's value is what the engine
    #: honours at most, read without starting it (`dynamo.llm.features.engine_features`).
    features: frozenset[Feature] = UNDECLARED
    #: The module of the library this engine runs on, for engines that import it lazily (vLLM,
    #: SGLang, TensorRT-LLM); `load_engine_class` checks it is there before any model is loaded,
    #: so a missing library is one line, not a model download followed by an ImportError.
    library: ClassVar[str | None] = None
    #: What to `pip install` for `library` (default: its module name).
    library_requirement: ClassVar[str | None] = None

    @classmethod
    @abc.abstractmethod
    async def start(cls, config: EngineConfig) -> Self:
        """Load the model and get ready to serve."""

    @abc.abstractmethod
    def generate(self, request: dict[str, Any], context: Context) -> AsyncIterator[dict[str, Any]]:
        """Stream the response to one request; stop soon after `context.is_stopped()`."""

    def runtime(self) -> EngineRuntime:
        """What this started engine runs with (see `EngineRuntime`); by default nothing that
        changes the card, and no publishers."""
        return EngineRuntime()

    async def attach(self, publishers: EnginePublishers) -> None:
        """Take the publishers a worker built for what `runtime()` asks for, and feed them until
        `close` (the worker closes them after that). Called at most once, after `start` and
        before the first request. An engine whose `runtime()` asks for publishers overrides it."""
        raise NotImplementedError(f"{type(self).__name__} publishes no KV events or load metrics")

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model. Called once, after the last request."""


# Engines that ship in this repository, by `out=` name, for the "pip install X" hint when the
# engine is not installed. Discovery itself goes only through entry points.
KNOWN_ENGINE_DISTRIBUTIONS = {
    "echo_core": "dynamo-engine-echo",
    "echo_full": "dynamo-engine-echo",
    "mocker": "dynamo-engine-mocker",
    "llamacpp": "dynamo-engine-llamacpp",
    "mistralrs": "dynamo-engine-mistralrs",
    "vllm": "dynamo-engine-vllm",
    "sglang": "dynamo-engine-sglang",
    "trtllm": "dynamo-engine-trtllm",
}


def installed_engines() -> dict[str, EntryPoint]:
    """The engines installed in this environment, by `out=` name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_engine_class(name: str, *, require_library: bool = True) -> type[Engine]:
    """The engine class registered as `name`, or an `EngineError` that says how to install it.

    `require_library=False` skips the check that the engine's inference library is installed:
    for reading what an engine class declares (its features) without serving with it."""
    eps = installed_engines()
    if name not in eps:
        dist = KNOWN_ENGINE_DISTRIBUTIONS.get(name)
        if dist:
            raise EngineError(f"engine '{name}' is not installed: pip install {dist}")
        known = ", ".join(sorted(set(eps) | set(KNOWN_ENGINE_DISTRIBUTIONS) | {"dyn"}))
        raise EngineError(f"unknown engine '{name}'; choose one of: {known}")
    try:
        cls = eps[name].load()
    except ImportError as e:
        owner = eps[name].dist
        dist = KNOWN_ENGINE_DISTRIBUTIONS.get(name, owner.name if owner is not None else name)
        raise EngineError(f"engine '{name}' failed to import ({e}); reinstall {dist}") from e
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise EngineError(f"entry point '{name}' does not name an Engine subclass")
    if require_library:
        check_library(name, cls)
    return cls


def check_library(name: str, cls: type[Engine]) -> None:
    """An `EngineError` naming the package to install when `cls.library` is missing."""
    if cls.library is None or importlib.util.find_spec(cls.library) is not None:
        return
    requirement = cls.library_requirement or cls.library
    raise EngineError(
        f"out={name} needs {requirement}, which is not installed: pip install {requirement}"
    )


def import_library(name: str, cls: type[Engine]) -> Any:
    """`cls.library`, imported (for an engine's `start`); an `EngineError` naming what to
    install when it is missing, or what to reinstall when it is broken."""
    if cls.library is None:
        raise TypeError(f"{cls.__name__} names no library")
    check_library(name, cls)
    try:
        return importlib.import_module(cls.library)
    except ImportError as e:
        requirement = cls.library_requirement or cls.library
        raise EngineError(
            f"out={name}: {requirement} is installed but does not import ({e}); reinstall it"
        ) from None


def load_embedding_engine_class(name: str) -> type[Engine]:
    """The Embedding engine of `out=name` (`--embedding`), or an `EngineError` saying which
    engines can embed."""
    eps = {ep.name: ep for ep in entry_points(group=EMBEDDING_ENTRY_POINT_GROUP)}
    if name not in eps:
        can = ", ".join(sorted(eps)) or "none installed"
        raise EngineError(
            f"out={name} cannot serve embeddings (--embedding); engines that can: {can}"
        )
    try:
        cls = eps[name].load()
    except ImportError as e:
        raise EngineError(f"the embedding engine of '{name}' failed to import ({e})") from e
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise EngineError(f"embedding entry point '{name}' does not name an Engine subclass")
    if cls.model_type is not ModelType.Embedding:
        raise EngineError(f"embedding entry point '{name}' names a {cls.model_type.value} engine")
    check_library(name, cls)
    return cls
