"""The LLM layer's names on the network, in one place: model entries and cards in etcd, the card
files' object-store names, and the KV subjects. Each record has its dump/parse pair (tested round
trip); nothing else in `dynamo.llm` spells one of these keys or subjects.

    model entry   models/{slug(ns.comp.ep-{instance_id:x})}       on the worker's lease
                  {"name", "endpoint": {"namespace", "component", "name"}, "model_type", "mdc",
                   "also_serves"?: [model types], "aliases"?: [names]}  upstream's shape, plus ours
    model card    mdc/{card.service_name}                          shared by the model's workers
                  the card's JSON, big files left out and named in "files"
    card files    NATS object store, bucket `card.service_name`; "files" maps each file name to
                  nats://{bucket}/{name}
    KV events     namespace.{ns}.component.{comp}.kv_events       (`dynamo.llm.kv.events`)
    load metrics  namespace.{ns}.kv_metrics                        (`dynamo.llm.kv.load_metrics`)

The runtime's names (instances, request subjects, endpoint paths) are in `dynamo.runtime.schema`.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from dynamo.llm.model_type import ModelType
from dynamo.runtime.schema import component_subject, namespace_subject, parse_endpoint_path
from dynamo.runtime.slug import slugify

MODELS_ROOT = "models"
MDC_ROOT = "mdc"
KV_EVENTS = "kv_events"
KV_METRICS = "kv_metrics"
#: Card fields carried by object-store files rather than inside the etcd value.
CARD_FILE_FIELDS = ("tokenizer_json",)


def kv_events_subject(namespace: str, component: str) -> str:
    """The subject KV events go to (upstream `namespace.{ns}.component.{comp}.kv_events`)."""
    return component_subject(namespace, component, KV_EVENTS)


def kv_sync_subject(namespace: str, component: str) -> str:
    """Where a router that starts asks the component's workers to announce again every block
    they hold (on their own events subject, in order with their live events): so a frontend that
    starts or restarts routes on what the workers cached before it was there."""
    return f"{kv_events_subject(namespace, component)}.sync"


def kv_metrics_subject(namespace: str) -> str:
    """Where load metrics go: upstream's `namespace.{ns}.kv_metrics`."""
    return namespace_subject(namespace, KV_METRICS)


def model_entry_key(endpoint_path: str, instance_id: int) -> str:
    return f"{MODELS_ROOT}/{slugify(f'{endpoint_path}-{instance_id:x}')}"


def instance_id_of_model_entry(key: str) -> int | None:
    """The worker instance a model entry key names (its last `-`-separated part, in hex), or
    None for a key not written by `model_entry_key`."""
    try:
        return int(key.rsplit("-", 1)[1], 16)
    except (IndexError, ValueError):
        return None


def card_key(service_name: str) -> str:
    return f"{MDC_ROOT}/{service_name}"


def card_file_url(bucket: str, name: str) -> str:
    return f"nats://{bucket}/{name}"


def parse_card_file_url(url: str) -> tuple[str, str]:
    """`nats://{bucket}/{name}` → (bucket, name)."""
    bucket, _, name = url.removeprefix("nats://").partition("/")
    return bucket, name


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A worker's announcement of the model it serves (one per worker, on its lease).

    `also_serves`: the other request kinds the worker takes (a Chat engine that also takes
    completions), published so the frontend serves exactly what the worker does. Upstream's
    entries do not have it: for them (`also_serves is None`) the frontend keeps its rule that a
    Chat worker takes completions too.

    `aliases`: the other names the model answers to (`--served-model-name a b`: `a` is `name`,
    the canonical id; `b` an alias), published only when there are some."""

    name: str
    namespace: str
    component: str
    endpoint: str
    model_type: ModelType
    mdc: str
    also_serves: frozenset[ModelType] | None = None
    aliases: tuple[str, ...] = ()

    @property
    def endpoint_path(self) -> str:
        return f"{self.namespace}.{self.component}.{self.endpoint}"

    def serves(self) -> frozenset[ModelType]:
        """Every request kind the worker takes."""
        also = self.also_serves
        if also is None:
            also = frozenset({ModelType.Completion}) if self.model_type is ModelType.Chat else None
        return frozenset({self.model_type}) | (also or frozenset())

    def dump(self) -> bytes:
        entry: dict = {
            "name": self.name,
            "endpoint": {
                "namespace": self.namespace,
                "component": self.component,
                "name": self.endpoint,
            },
            "model_type": self.model_type.value,
            "mdc": self.mdc,
        }
        if self.also_serves is not None and self.model_type is not ModelType.Backend:
            entry["also_serves"] = sorted(t.value for t in self.also_serves)
        if self.aliases:
            entry["aliases"] = list(self.aliases)
        return orjson.dumps(entry)

    @classmethod
    def parse(cls, value: bytes) -> ModelEntry:
        entry = orjson.loads(value)
        ep = entry["endpoint"]
        also = entry.get("also_serves")
        name = entry["name"]
        aliases = entry.get("aliases") or []
        if not all(isinstance(a, str) and a for a in aliases):
            raise ValueError(f"model entry of '{name}': aliases must be non-empty names")
        return cls(
            name,
            ep["namespace"],
            ep["component"],
            ep["name"],
            ModelType.parse(entry["model_type"]),
            entry.get("mdc") or card_key(slugify(name)),
            None if also is None else frozenset(ModelType.parse(t) for t in also),
            tuple(aliases),
        )

    @classmethod
    def for_endpoint(
        cls,
        name: str,
        endpoint_path: str,
        model_type: ModelType,
        mdc: str,
        also_serves: frozenset[ModelType] = frozenset(),
        aliases: tuple[str, ...] = (),
    ) -> ModelEntry:
        namespace, component, endpoint = parse_endpoint_path(endpoint_path)
        return cls(name, namespace, component, endpoint, model_type, mdc, also_serves, aliases)


def card_record(card_json: bytes, bucket: str, file_names: list[str]) -> bytes:
    """The card as etcd holds it: its JSON with the big fields left out, and where the files
    that carry them are."""
    fields = orjson.loads(card_json)
    for name in CARD_FILE_FIELDS:
        fields[name] = None
    fields["files"] = {name: card_file_url(bucket, name) for name in file_names}
    return orjson.dumps(fields)


def parse_card_record(value: bytes) -> tuple[dict, dict[str, tuple[str, str]]]:
    """(the card's fields, file name → (bucket, object name)) from a card record."""
    fields = orjson.loads(value)
    files = fields.pop("files", None) or {}
    return fields, {name: parse_card_file_url(url) for name, url in files.items()}


__all__ = [
    "CARD_FILE_FIELDS",
    "KV_EVENTS",
    "KV_METRICS",
    "MDC_ROOT",
    "MODELS_ROOT",
    "ModelEntry",
    "card_file_url",
    "card_key",
    "card_record",
    "instance_id_of_model_entry",
    "kv_events_subject",
    "kv_metrics_subject",
    "kv_sync_subject",
    "model_entry_key",
    "parse_card_file_url",
    "parse_card_record",
]
