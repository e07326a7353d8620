"""The runtime's names on the network, in one place: endpoint paths, etcd instance keys and
records, and NATS subjects. Each record has its dump/parse pair (tested round trip); nothing else
in the runtime spells a key or a subject.

    endpoint path     ns.comp.ep                    (`dyn://ns.comp.ep` on the command line)
    instance key      instances/{ns}/{comp}/{ep}:{instance_id:x}        on the worker's lease
    instance record   {"component", "endpoint", "namespace", "instance_id",
                       "transport": {"nats_tcp": subject}                 upstream's shape
                                  | {"tcp": "host:port/subject"}}          (by request plane)
    request subject   {slug(ns_comp)}.{ep}-{instance_id:x}
    events            namespace.{ns}.component.{comp}.{event}   (a component's, e.g. kv_events)
                      namespace.{ns}.{event}                    (a namespace's, e.g. kv_metrics)

The LLM layer's names (model entries, cards, object-store buckets) are in `dynamo.llm.schema`.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from dynamo.runtime.slug import slugify

INSTANCES_ROOT = "instances"
#: What `dyn://ns` and `dyn://ns.comp` leave out.
DEFAULT_ENDPOINT = ("dynamo", "backend", "generate")


def parse_endpoint_path(path: str, *, fill_defaults: bool = False) -> tuple[str, str, str]:
    """`ns.comp.ep` (or `dyn://ns.comp.ep`) → (ns, comp, ep); `ValueError` if malformed.

    With `fill_defaults`, missing trailing parts come from `dynamo.backend.generate`
    (`dyn://llama` is `llama.backend.generate`), as `dynamo-run in=dyn://...` allows."""
    parts = path.removeprefix("dyn://").split(".")
    if not all(parts) or not 1 <= len(parts) <= 3 or (len(parts) < 3 and not fill_defaults):
        raise ValueError(f"an endpoint path is namespace.component.endpoint, not {path!r}")
    ns, comp, ep = (*parts, *DEFAULT_ENDPOINT[len(parts) :])
    return ns, comp, ep


def endpoint_path(namespace: str, component: str, endpoint: str) -> str:
    return f"{namespace}.{component}.{endpoint}"


def instance_prefix(namespace: str, component: str, endpoint: str) -> str:
    """The etcd prefix under which every instance of the endpoint has its key."""
    return f"{INSTANCES_ROOT}/{namespace}/{component}/{endpoint}:"


def instance_key(namespace: str, component: str, endpoint: str, instance_id: int) -> str:
    return f"{instance_prefix(namespace, component, endpoint)}{instance_id:x}"


def instance_id_of(key: str) -> int:
    """The instance id at the end of an instance key."""
    return int(key.rsplit(":", 1)[1], 16)


def request_subject(namespace: str, component: str, endpoint: str, instance_id: int) -> str:
    """The NATS subject one instance takes its requests on (upstream's)."""
    return f"{slugify(f'{namespace}_{component}')}.{endpoint}-{instance_id:x}"


def component_subject(namespace: str, component: str, event: str) -> str:
    """Where a component's events go, e.g. `namespace.ns.component.comp.kv_events`."""
    return f"namespace.{namespace}.component.{component}.{event}"


def namespace_subject(namespace: str, event: str) -> str:
    """Where a namespace's events go, e.g. `namespace.ns.kv_metrics`."""
    return f"namespace.{namespace}.{event}"


#: The request planes an instance record can name, by their key in its `transport`.
TRANSPORTS = ("nats_tcp", "tcp")


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """What a serving worker writes at its instance key: who it is and how to reach it.

    `transport` is the request plane (`nats_tcp`: NATS, `address` its subject; `tcp`: direct
    TCP, `address` is `host:port/subject`): each caller reaches each worker by its own record."""

    namespace: str
    component: str
    endpoint: str
    instance_id: int
    address: str
    transport: str = "nats_tcp"

    @property
    def key(self) -> str:
        return instance_key(self.namespace, self.component, self.endpoint, self.instance_id)

    def dump(self) -> bytes:
        return orjson.dumps(
            {
                "component": self.component,
                "endpoint": self.endpoint,
                "namespace": self.namespace,
                "instance_id": self.instance_id,
                "transport": {self.transport: self.address},
            }
        )

    @classmethod
    def parse(cls, value: bytes) -> InstanceRecord:
        """The record; `ValueError` for a transport this runtime cannot speak (upstream's
        `http`) or a malformed one."""
        record = orjson.loads(value)
        transport = record["transport"]
        kind = next((k for k in TRANSPORTS if k in transport), None)
        if kind is None:
            raise ValueError(f"instance transport {sorted(transport)} is not one of {TRANSPORTS}")
        return cls(
            record["namespace"],
            record["component"],
            record["endpoint"],
            record["instance_id"],
            transport[kind],
            kind,
        )


__all__ = [
    "DEFAULT_ENDPOINT",
    "INSTANCES_ROOT",
    "TRANSPORTS",
    "InstanceRecord",
    "component_subject",
    "endpoint_path",
    "instance_id_of",
    "instance_key",
    "instance_prefix",
    "namespace_subject",
    "parse_endpoint_path",
    "request_subject",
]
