"""The run configuration of `dynamo-run`: built once from the command line, frozen, typed.

`flags.parse_command_line` turns argv into a `RunConfig`; the modes read it and never change it.
What they work out from it (the engine to use when `out=` is omitted, the built-in model when
none is given) they derive as new values.

Building it checks the whole command line at once, before any engine loads:

- every flag the user typed (`RunConfig.explicit`, so a default nobody typed never counts) must
  mean something in the chosen mode: `FLAG_SCOPES` says where each flag applies, and a flag
  typed elsewhere is refused with one line, as the engine flags are refused per engine
  (`local_model.check_engine_flags`);
- values that go together (TLS certificate and key, the admission limits, the runtime's
  environment of a distributed run) are read into the option objects the modes use, and the
  files the flags name (`--extra-engine-args`, `--request-template`) are read, so a bad one is
  one line before any model loads.

A new flag needs three things that a test holds together: its `add_argument` in
`flags.build_parser`, a field here of the same name, and its entry in `FLAG_SCOPES`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from dynamo.frontend.flags import UsageError, parse_dyn_path

if TYPE_CHECKING:
    from dynamo.frontend.admission import AdmissionOptions
    from dynamo.frontend.http.options import HttpOptions
    from dynamo.frontend.request_template import RequestTemplate
    from dynamo.runtime.config import RuntimeConfig

INPUTS_HELP = "text, stdin, http, batch:FILE or dyn://ns.comp.ep"


class Mode(enum.Enum):
    """The three ways `dynamo-run` runs (`dynamo.frontend.modes`)."""

    #: `in=text|stdin|http|batch:FILE out=ENGINE`: the engine in this process.
    LOCAL = "local"
    #: `in=text|stdin|http|batch:FILE out=dyn`: route to the workers found by discovery.
    FRONTEND = "frontend"
    #: `in=dyn://ns.comp.ep out=ENGINE`: serve the engine as a distributed worker.
    WORKER = "worker"


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """The parsed command line. Field names are the flags' (`--http-port` is `http_port`);
    defaults are the flags' defaults."""

    #: `in=`: text, stdin, http, batch:FILE or dyn://ns.comp.ep.
    input: str
    #: `out=`: an engine name, `dyn`, or None (the default engine for the model).
    output: str | None = None
    #: The flags the user typed, by field name (the positional MODEL counts as `model_path`).
    explicit: frozenset[str] = frozenset()

    # -- model ------------------------------------------------------------------------------
    model_path: str | None = None
    #: `--model-name`, or the first `--served-model-name`.
    model_name: str | None = None
    #: The other `--served-model-name` names.
    model_aliases: tuple[str, ...] = ()
    chat_template: str | None = None
    embedding: bool = False
    model_config: str | None = None
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    #: The engine flags stay None unless typed, so an engine that cannot use one can refuse it
    #: (and an explicit `--kv-cache-block-size 16` is not "unset").
    context_length: int | None = None
    kv_cache_block_size: int | None = None
    extra_engine_args: str | None = None
    request_template: str | None = None
    tensor_parallel_size: int | None = None
    base_gpu_id: int | None = None
    num_nodes: int | None = None
    node_rank: int | None = None
    leader_addr: str | None = None

    # -- HTTP server --------------------------------------------------------------------------
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    #: HTTP processes sharing the port (`--http-workers`, out=dyn only).
    http_workers: int = 1
    enable_anthropic_api: bool = False
    api_keys: tuple[str, ...] = ()
    protect_metrics: bool = False
    tls_cert_path: str | None = None
    tls_key_path: str | None = None
    allowed_origins: tuple[str, ...] = ()
    max_request_body_size: str | None = None
    max_concurrent_requests: int | None = None
    queue_size: int | None = None
    queue_timeout: float | None = None
    request_timeout: float | None = None

    # -- routing and the distributed runtime ----------------------------------------------------
    router_mode: str = "round-robin"
    #: None: the KV router's default (predicted).
    router_cost: str | None = None
    kv_overlap_score_weight: float = 1.0
    router_temperature: float = 0.0
    #: None: the KV index's default budget.
    kv_index_max_blocks: int | None = None
    #: None: each worker's card says (on a worker: 0).
    migration_limit: int | None = None
    request_plane: str | None = None
    discovery_backend: str | None = None

    # -- other inputs -------------------------------------------------------------------------
    batch_concurrency: int = 16
    verbose: int = 0

    # -- read and checked from the above when built ---------------------------------------------
    #: The HTTP server's options (`in=http`), else None.
    http: HttpOptions | None = None
    #: Admission control (`in=http`), else None.
    admission: AdmissionOptions | None = None
    #: The runtime's settings: the environment with `--request-plane` and
    #: `--discovery-backend` over it (`in=dyn://` and `out=dyn`), else None.
    runtime: RuntimeConfig | None = None
    #: `--extra-engine-args`, read (an engine's side; empty when not given).
    engine_args: Mapping[str, Any] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    #: `--request-template`, read (`in=http`), else None.
    template: RequestTemplate | None = None

    @property
    def mode(self) -> Mode:
        if self.input.startswith("dyn://"):
            return Mode.WORKER
        if self.output == "dyn":
            return Mode.FRONTEND
        return Mode.LOCAL

    @property
    def batch_file(self) -> str | None:
        """The file of `in=batch:FILE`."""
        return self.input.removeprefix("batch:") if self.input.startswith("batch:") else None


# -- where each flag applies ------------------------------------------------------------------


@dataclass(frozen=True)
class Needs:
    """One condition for a flag to mean something, and the line that refuses it: the flag then
    `why`, or `why` with the flag in its `{flag}`."""

    holds: Callable[[RunConfig], bool]
    why: str


ENGINE_SIDE = Needs(
    lambda c: c.mode is not Mode.FRONTEND,
    "is a flag of the engine (a worker flag); out=dyn serves the models its workers registered",
)
HTTP = Needs(lambda c: c.input == "http", "is a flag of the HTTP server: it needs in=http")
ROUTER = Needs(
    lambda c: c.mode is Mode.FRONTEND,
    "is a flag of the router: it needs out=dyn (in process there is one engine; a worker does "
    "not route)",
)
KV_ROUTER = Needs(lambda c: c.router_mode == "kv", "is a KV router flag: it needs --router-mode kv")
DISTRIBUTED = Needs(
    lambda c: c.mode is not Mode.LOCAL, "is a distributed flag: it needs in=dyn:// or out=dyn"
)


def _http_or_worker(c: RunConfig) -> bool:
    """Where requests may carry tools (or texts to embed): HTTP, and a worker's frontends."""
    return c.input == "http" or c.mode is Mode.WORKER


#: Field name -> what it needs, checked in this order; a flag typed where one fails is refused
#: with that one's line. `()` applies in every mode.
FLAG_SCOPES: dict[str, tuple[Needs, ...]] = {
    "model_path": (ENGINE_SIDE,),
    "model_name": (ENGINE_SIDE,),
    "served_model_name": (
        ENGINE_SIDE,
        Needs(
            lambda c: not c.model_aliases or _http_or_worker(c),
            "several {flag} names need in=http or in=dyn:// (a worker publishes them for its "
            "frontends)",
        ),
    ),
    "chat_template": (ENGINE_SIDE,),
    "embedding": (
        ENGINE_SIDE,
        Needs(
            _http_or_worker,
            "serves POST /v1/embeddings: it needs in=http or in=dyn://",
        ),
    ),
    "model_config": (ENGINE_SIDE,),
    "tool_call_parser": (
        Needs(
            _http_or_worker,
            "finds the tool calls of requests with tools, which only HTTP requests have: it "
            "needs in=http or in=dyn://",
        ),
    ),
    # It also splits the reasoning off the text that in=text, stdin and batch print.
    "reasoning_parser": (),
    "context_length": (ENGINE_SIDE,),
    "kv_cache_block_size": (ENGINE_SIDE,),
    "extra_engine_args": (ENGINE_SIDE,),
    "tensor_parallel_size": (ENGINE_SIDE,),
    "base_gpu_id": (ENGINE_SIDE,),
    "num_nodes": (ENGINE_SIDE,),
    "node_rank": (ENGINE_SIDE,),
    "leader_addr": (ENGINE_SIDE,),
    "request_template": (HTTP,),
    "http_host": (HTTP,),
    "http_port": (HTTP,),
    "http_workers": (
        HTTP,
        Needs(
            lambda c: c.http_workers == 1 or c.mode is Mode.FRONTEND,
            "{flag} N needs out=dyn: an engine in this process cannot be shared between "
            "processes; run it as in=dyn://... workers behind in=http out=dyn {flag} N",
        ),
    ),
    "enable_anthropic_api": (Needs(lambda c: c.input == "http", "serves HTTP: it needs in=http"),),
    "api_keys": (HTTP,),
    "protect_metrics": (HTTP,),
    "tls_cert_path": (HTTP,),
    "tls_key_path": (HTTP,),
    "allowed_origins": (HTTP,),
    "max_request_body_size": (HTTP,),
    "max_concurrent_requests": (HTTP,),
    "queue_size": (HTTP,),
    "queue_timeout": (HTTP,),
    "request_timeout": (HTTP,),
    "router_mode": (ROUTER,),
    "router_cost": (ROUTER, KV_ROUTER),
    "kv_overlap_score_weight": (ROUTER, KV_ROUTER),
    "router_temperature": (ROUTER, KV_ROUTER),
    "kv_index_max_blocks": (ROUTER, KV_ROUTER),
    # A worker puts it on its card; out=dyn overrides the cards'. In process nothing migrates.
    "migration_limit": (DISTRIBUTED,),
    # On out=dyn too: whether the frontend connects to NATS at all (one-host runs without it).
    "request_plane": (DISTRIBUTED,),
    "discovery_backend": (DISTRIBUTED,),
    "batch_concurrency": (
        Needs(lambda c: c.batch_file is not None, "is a flag of in=batch: it needs in=batch:FILE"),
    ),
    "verbose": (),
}


def check_scopes(config: RunConfig, flag_names: Mapping[str, str]) -> None:
    """Refuse the first typed flag that means nothing in `config`'s mode (`FLAG_SCOPES`)."""
    for field, needs in FLAG_SCOPES.items():
        if field not in config.explicit:
            continue
        for need in needs:
            if not need.holds(config):
                flag = flag_names.get(field, field)
                why = need.why
                raise UsageError(why.format(flag=flag) if "{flag}" in why else f"{flag} {why}")


# -- building it ------------------------------------------------------------------------------


def _check_input(inp: str, out: str | None) -> None:
    known = inp in ("http", "text", "stdin") or inp.startswith(("batch:", "dyn://"))
    if not known:
        raise UsageError(f"unknown input in={inp}: use {INPUTS_HELP}")
    if inp == "batch:":
        raise UsageError("in=batch: needs a file, e.g. in=batch:prompts.jsonl")
    if out == "dyn" and inp.startswith("dyn://"):
        raise UsageError("in=dyn://... serves an engine; it cannot also be out=dyn")
    if inp.startswith("dyn://"):
        parse_dyn_path(inp)  # a bad endpoint is a usage error now, not after the model loads


def _names(values: dict[str, Any]) -> dict[str, Any]:
    """MODEL or --model-path; --model-name or --served-model-name (first name, then aliases)."""
    model, model_path = values.pop("model", None), values.pop("model_path", None)
    if model and model_path and model != model_path:
        raise UsageError("give the model once: either positionally or with --model-path")
    name = values.get("model_name")
    if name is not None and not name.strip():
        raise UsageError("--model-name must not be empty")
    served = values.pop("served_model_name", None)
    if served:
        if name:
            raise UsageError("give the name once: --model-name or --served-model-name")
        values["model_name"], *aliases = served
        values["model_aliases"] = tuple(aliases)
    values["model_path"] = model_path or model
    return values


def parse_extra_engine_args(value: str | None) -> dict[str, Any]:
    """`--extra-engine-args`: inline JSON, a JSON file, or a YAML file (`.yaml`/`.yml`, as
    upstream's `out=trtllm` took its LLM arguments)."""
    if not value:
        return {}
    text = value
    yaml_file = False
    if not value.lstrip().startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise UsageError(f"--extra-engine-args: no such file '{value}' (and not inline JSON)")
        text = path.read_text()
        yaml_file = path.suffix.lower() in (".yaml", ".yml")
    if yaml_file:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            problem = " ".join(str(e).split())
            raise UsageError(f"--extra-engine-args: {value} is not valid YAML: {problem}") from None
    else:
        import orjson

        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise UsageError(f"--extra-engine-args is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise UsageError("--extra-engine-args must be a JSON object (a YAML mapping)")
    return data


def _runtime_config(config: RunConfig) -> RuntimeConfig:
    """The runtime's settings: the environment (ETCD_ENDPOINTS, NATS_SERVER, ...), with the
    flags over it (the flags name the same settings as DYN_REQUEST_PLANE and
    DYN_DISCOVERY_BACKEND), checked before any model loads."""
    from dynamo.runtime.config import RuntimeConfig
    from dynamo.runtime.errors import RuntimeConfigError

    try:
        settings = RuntimeConfig.from_env()
    except RuntimeConfigError as e:
        raise UsageError(str(e)) from None
    overrides = {
        "request_plane": config.request_plane,
        "discovery_backend": config.discovery_backend,
    }
    settings = dataclasses.replace(
        settings, **{k: v for k, v in overrides.items() if v is not None}
    )
    if config.mode is Mode.FRONTEND and config.router_mode == "kv" and not settings.needs_nats:
        raise UsageError(
            "--router-mode kv listens to the workers' KV events on NATS: set NATS_SERVER "
            "(file discovery and the TCP request plane need no NATS otherwise)"
        )
    return settings


def build_run_config(
    inp: str,
    out: str | None,
    values: Mapping[str, Any],
    flag_names: Mapping[str, str],
) -> RunConfig:
    """The checked `RunConfig` of `in=inp out=out` and the typed flags `values` (argparse's
    namespace holding only what was typed, by field name); `UsageError` for the first problem.
    `flag_names` spells each field as the user would (`http_port` -> `--http-port`)."""
    _check_input(inp, out)
    typed = dict(values)
    explicit = {"model_path" if k == "model" else k for k in typed}
    fields = _names(typed)
    for key in ("api_keys", "allowed_origins"):
        if fields.get(key) is not None:
            fields[key] = tuple(fields[key])
    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = set(fields) - known
    if unknown:  # a flag added to the parser but not here: the test of this module says so
        raise TypeError(f"RunConfig has no field for {', '.join(sorted(unknown))}")
    config = RunConfig(input=inp, output=out, explicit=frozenset(explicit), **fields)
    check_scopes(config, flag_names)
    derived: dict[str, Any] = {}
    if config.mode is not Mode.FRONTEND:
        derived["engine_args"] = MappingProxyType(parse_extra_engine_args(config.extra_engine_args))
    if inp == "http":
        from dynamo.frontend.request_template import RequestTemplate

        derived["template"] = RequestTemplate.load(config.request_template)
        from dynamo.frontend.admission import AdmissionOptions
        from dynamo.frontend.http.options import HttpOptions

        derived["http"] = HttpOptions.from_args(config)
        derived["admission"] = AdmissionOptions.from_args(config)
    if config.mode is not Mode.LOCAL:
        derived["runtime"] = _runtime_config(config)
    return dataclasses.replace(config, **derived) if derived else config


__all__ = [
    "FLAG_SCOPES",
    "Mode",
    "Needs",
    "RunConfig",
    "build_run_config",
    "check_scopes",
    "parse_extra_engine_args",
]
