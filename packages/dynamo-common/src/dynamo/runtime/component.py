"""Namespace → Component → Endpoint → instances, with upstream's names, keys and subjects."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from dynamo.runtime import schema
from dynamo.runtime.client import Client
from dynamo.runtime.request_plane import EndpointServer, Handler
from dynamo.runtime.slug import slugify
from dynamo.runtime.tcp_plane import TcpEndpoint

if TYPE_CHECKING:
    from dynamo.runtime.distributed import DistributedRuntime

log = logging.getLogger(__name__)


class Namespace:
    """A group of components (upstream: one deployment). Only a name: nothing is registered."""

    def __init__(self, runtime: DistributedRuntime, name: str):
        self.runtime = runtime
        self.name = name

    def component(self, name: str) -> Component:
        return Component(self, name)


class Component:
    """A service in a namespace (`backend`, `prefill`); its endpoints are what workers serve."""

    def __init__(self, namespace: Namespace, name: str):
        self.runtime = namespace.runtime
        self.namespace = namespace.name
        self.name = name
        self.service_name = slugify(f"{namespace.name}_{name}")

    async def create_service(self) -> None:
        """Upstream registers a NATS service here; we only need the connection to be up."""
        await self.runtime.ensure_connected()

    def endpoint(self, name: str) -> Endpoint:
        return Endpoint(self, name)


class Endpoint:
    """`ns.comp.ep`: served by workers (`serve_endpoint`), called through `client()`."""

    def __init__(self, component: Component, name: str):
        self.component = component
        self.runtime = component.runtime
        self.name = name

    @property
    def path(self) -> str:
        return schema.endpoint_path(self.component.namespace, self.component.name, self.name)

    @property
    def prefix(self) -> str:
        return schema.instance_prefix(self.component.namespace, self.component.name, self.name)

    def subject(self, instance_id: int) -> str:
        return schema.request_subject(
            self.component.namespace, self.component.name, self.name, instance_id
        )

    def lease_id(self) -> int:
        """This process's instance id (its primary etcd lease)."""
        return self.runtime.instance_id()

    async def serve_endpoint(
        self,
        handler: Handler,
        graceful_shutdown: bool = True,
        metrics_labels: Any = None,
        health_check_payload: Any = None,
    ) -> None:
        """Serve until the runtime shuts down (or this call is cancelled): then deregister, and
        finish the in-flight requests or hand them over.

        With `graceful_shutdown` the streams in flight get the runtime's grace period
        (`DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT`) to finish; without it they get none. A stream
        still running after it is handed over: it ends with the "worker stopped" error frame
        (503), which a caller with request migration resumes on another worker (upstream's
        shutdown design: finish within the grace period, migrate the rest), so that scaling
        down costs no client its answer and the process still exits within the grace period.

        `handler` is an async generator function of `(request)` or `(request, context)`.
        `metrics_labels` and `health_check_payload` are upstream's parameters, in its order, and
        refused when given (`ValueError`): this runtime has no per-endpoint Prometheus metrics to
        label and no canary health checks to send a payload with, and a worker that passes them
        must not believe they take effect.
        """
        for name, value in (
            ("metrics_labels", metrics_labels),
            ("health_check_payload", health_check_payload),
        ):
            if value is not None:
                raise ValueError(
                    f"serve_endpoint({name}=...): not supported by this runtime (no endpoint "
                    "metrics or health checks); leave it unset"
                )
        runtime = self.runtime
        await runtime.ensure_connected()
        instance_id = await runtime.primary_lease()
        subject = self.subject(instance_id)
        server: EndpointServer | TcpEndpoint
        if runtime.config.request_plane == "tcp":
            server = (await runtime.tcp_server()).endpoint(subject, handler)
            address, transport = server.address, "tcp"
        else:
            server = EndpointServer(runtime.nats, subject, handler)
            address, transport = subject, "nats_tcp"
        await server.start()
        record = schema.InstanceRecord(
            self.component.namespace,
            self.component.name,
            self.name,
            instance_id,
            address,
            transport,
        )
        key = record.key
        try:
            await runtime.etcd.put_leased(key, record.dump())
            log.info("serving %s as instance %x", self.path, instance_id)
            await runtime.shutting_down.wait()
        finally:
            # Leave the routing set first, then finish what is in flight.
            await runtime.etcd.delete_owned(key)
            for extra in runtime.keys_for_endpoint(self.path):
                await runtime.etcd.delete_owned(extra)
            await server.drain(runtime.config.graceful_shutdown_timeout if graceful_shutdown else 0)

    async def client(self) -> Client:
        client = Client(self)
        await client.start()
        return client
