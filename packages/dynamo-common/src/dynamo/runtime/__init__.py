"""The distributed runtime: discovery (etcd or a directory), the request plane (TCP or NATS), and
upstream's worker API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynamo.runtime.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from dynamo.runtime.client import Client
    from dynamo.runtime.component import Component, Endpoint, Namespace
    from dynamo.runtime.config import RuntimeConfig
    from dynamo.runtime.context import Context
    from dynamo.runtime.distributed import DistributedRuntime, dynamo_worker
    from dynamo.runtime.errors import (
        DynamoRuntimeError,
        InstanceGoneError,
        NoInstancesError,
        RemoteError,
        RequestPlaneDownError,
    )

# Loaded on first use: `dynamo.runtime.context` (which every engine imports) must not bring the
# NATS, etcd and gRPC clients into a process that never talks to them (`in=http out=echo_full`
# starts in about half the time without them; docs/performance.md).
_WHERE = {
    "Client": "client",
    "Component": "component",
    "Endpoint": "component",
    "Namespace": "component",
    "RuntimeConfig": "config",
    "Context": "context",
    "DistributedRuntime": "distributed",
    "dynamo_worker": "distributed",
    "DynamoRuntimeError": "errors",
    "InstanceGoneError": "errors",
    "NoInstancesError": "errors",
    "RemoteError": "errors",
    "RequestPlaneDownError": "errors",
}


__getattr__ = lazy_exports(
    __name__, {name: f"dynamo.runtime.{module}" for name, module in _WHERE.items()}
)


__all__ = [
    "Client",
    "Component",
    "Context",
    "DistributedRuntime",
    "DynamoRuntimeError",
    "Endpoint",
    "InstanceGoneError",
    "Namespace",
    "NoInstancesError",
    "RemoteError",
    "RequestPlaneDownError",
    "RuntimeConfig",
    "dynamo_worker",
]
