"""The distributed runtime: etcd discovery, the NATS request plane, and upstream's worker API."""

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
