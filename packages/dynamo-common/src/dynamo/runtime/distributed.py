"""`DistributedRuntime` and `@dynamo_worker`: discovery (etcd or a directory), the request plane
(TCP or NATS) and NATS where something needs it, for one process; and its shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from dynamo.runtime.auth import ControlPlaneAuthError, is_auth_refusal, nats_options
from dynamo.runtime.backoff import Backoff
from dynamo.runtime.component import Endpoint, Namespace
from dynamo.runtime.config import RuntimeConfig
from dynamo.runtime.file_discovery import FileDiscovery
from dynamo.runtime.objects import FileObjects, NatsObjects, ObjectStore
from dynamo.runtime.schema import parse_endpoint_path
from dynamo.runtime.tcp_plane import TcpClient, TcpRequestServer, advertised_host

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from dynamo.runtime.etcd import Etcd

log = logging.getLogger(__name__)


async def connect_nats(
    url: str,
    closing: asyncio.Event | None = None,
    on_reconnect: Callable[[], None] | None = None,
) -> NATS:
    """Connect, retrying (and saying so once) until NATS answers; reconnect forever afterwards.

    `on_reconnect` runs after every reconnection (not the first connect).
    """
    import nats  # here: a process on file discovery and the TCP plane never loads it
    import nats.errors

    warned = False

    async def disconnected() -> None:
        if closing is None or not closing.is_set():
            log.warning("lost NATS at %s; reconnecting", url)

    async def reconnected() -> None:
        log.info("reconnected to NATS at %s", url)
        if on_reconnect is not None:
            on_reconnect()

    errors: list[Exception] = []  # what the client reported while connecting

    async def error(e: Exception) -> None:
        errors.append(e)
        del errors[:-3]
        log.debug("NATS: %s", e)

    credentials = nats_options()
    backoff = Backoff()
    while True:
        try:
            # nats-py retries a failed first connect forever, silently, when reconnecting is
            # unlimited: let it fail (so we can say once that NATS is unreachable, and back off),
            # then allow reconnecting forever for the life of the connection.
            nc = await nats.connect(
                servers=[url],
                connect_timeout=2,
                allow_reconnect=True,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.5,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
                **credentials,
            )
            nc.options["max_reconnect_attempts"] = -1
            if warned:
                log.info("connected to NATS at %s", url)
            return nc
        except (TimeoutError, OSError, nats.errors.Error) as e:
            refusal = next((x for x in (e, *errors) if is_auth_refusal(x)), None)
            if refusal is not None:
                raise ControlPlaneAuthError(
                    f"NATS at {url} refused our credentials ({refusal}): check NATS_AUTH_USERNAME "
                    "and NATS_AUTH_PASSWORD, NATS_AUTH_TOKEN, NATS_AUTH_NKEY, "
                    "NATS_AUTH_CREDENTIALS_FILE or the user in NATS_SERVER"
                ) from None
            if not warned:
                log.warning(
                    "cannot reach NATS at %s (%s); retrying (set NATS_SERVER)",
                    url,
                    type(e).__name__,
                )
                warned = True
            await backoff.sleep()


class DistributedRuntime:
    """The process's handle on etcd and NATS. `shutting_down` ends every `serve_endpoint`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        is_static: bool = False,
        config: RuntimeConfig | None = None,
    ):
        """`loop` and `is_static` are upstream's parameters, in its order. `loop`, when given, must
        be the running loop (the runtime lives on the loop it is used from); `is_static=True`
        (upstream's static mode: endpoints without discovery) is refused, as workers are only
        found through discovery here (etcd, or the `file` backend on one host)."""
        if is_static:
            raise ValueError(
                "DistributedRuntime(is_static=True): static mode (no discovery) is not "
                "supported; use the etcd or the file discovery backend"
            )
        if loop is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not None and loop is not running:
                raise ValueError(
                    "DistributedRuntime(loop=...): the runtime runs on the running event loop; "
                    "pass that loop or None"
                )
        self.config = config or RuntimeConfig.from_env()
        #: Discovery: etcd, or the `file` backend (the same interface).
        self.etcd: Etcd | FileDiscovery
        if self.config.discovery_backend == "file":
            self.etcd = FileDiscovery(self.config)
        else:
            from dynamo.runtime.etcd import Etcd  # aetcd and gRPC only where etcd is used

            self.etcd = Etcd(self.config)
        self._nats: NATS | None = None
        self._connected = asyncio.Lock()
        self.shutting_down = asyncio.Event()
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._endpoint_keys: dict[str, list[str]] = {}
        self._instance_id: int | None = None
        self._reconnect_hooks: list[Callable[[], Awaitable[None]]] = []
        self._hook_tasks: set[asyncio.Task] = set()
        self._tcp_server: TcpRequestServer | None = None
        self._tcp_client: TcpClient | None = None
        self._discovery_connected = False

    async def ensure_connected(self) -> None:
        async with self._connected:
            if not self._discovery_connected:
                await self.etcd.connect()
                self._discovery_connected = True
            if self._nats is None and self.config.needs_nats:
                self._nats = await connect_nats(
                    self.config.nats_server, self.shutting_down, self._nats_reconnected
                )

    def on_nats_reconnect(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run `hook` after each NATS reconnection: state that lives in NATS (the object store
        holding model card files) may have been lost with the server."""
        self._reconnect_hooks.append(hook)

    def _nats_reconnected(self) -> None:
        # Not awaited inside nats-py's callback: a hook may need the connection it is restoring.
        for hook in self._reconnect_hooks:
            task = asyncio.ensure_future(hook())
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)

    async def connect_unless_stopped(self) -> bool:
        """`ensure_connected`, unless a shutdown comes first (SIGTERM while etcd is unreachable):
        then give up waiting and return False."""
        connecting = asyncio.ensure_future(self.ensure_connected())
        stopping = asyncio.ensure_future(self.shutting_down.wait())
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if connecting.done():
            connecting.result()
            return True
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connecting
        return False

    @property
    def nats(self) -> NATS:
        if self._nats is None:
            if not self.config.needs_nats:
                raise RuntimeError(
                    "NATS is not in use (file discovery and the TCP request plane): set "
                    "NATS_SERVER for what needs it (KV routing events)"
                )
            raise RuntimeError("the runtime is not connected yet")
        return self._nats

    def event_sender(self, what: str) -> Callable[[str, bytes], Awaitable[None]]:
        """Publishes `what` (KV events, load metrics) on NATS; where NATS is not in use (file
        discovery, TCP plane, no NATS_SERVER) no router can listen, so it says so once and
        sends nothing."""
        if self.config.needs_nats:

            async def publish(subject: str, payload: bytes) -> None:
                await self.nats.publish(subject, payload)

            return publish
        log.info("no NATS (NATS_SERVER is unset): %s are not published", what)

        async def nowhere(subject: str, payload: bytes) -> None:
            return None

        return nowhere

    def objects(self) -> ObjectStore:
        """Where model card files go: beside the `file` discovery backend's records, else the
        NATS object store."""
        if isinstance(self.etcd, FileDiscovery):
            return FileObjects(self.etcd.root)
        return NatsObjects(self.nats)

    async def tcp_server(self) -> TcpRequestServer:
        """The process's TCP request-plane socket (every endpoint it serves shares it), started
        on first use at DYN_TCP_RPC_HOST:DYN_TCP_RPC_PORT (default: the interface that reaches
        etcd, any free port)."""
        async with self._connected:
            if self._tcp_server is None:
                config = self.config
                host = config.tcp_host or (
                    "127.0.0.1"  # file discovery is for one host
                    if config.discovery_backend == "file"
                    else advertised_host(config.etcd_host_port()[0])
                )
                server = TcpRequestServer(
                    host, config.tcp_port, config.tcp_max_message, config.tcp_token
                )
                await server.start()
                self._tcp_server = server
            return self._tcp_server

    @property
    def tcp_client(self) -> TcpClient:
        """This process's connections to workers serving over TCP, opened as needed."""
        if self._tcp_client is None:
            self._tcp_client = TcpClient(self.config.tcp_max_message, self.config.tcp_token)
        return self._tcp_client

    async def primary_lease(self) -> int:
        """This process's instance id: the first lease it took (kept across lease recovery)."""
        lease = await self.etcd.primary_lease()
        if self._instance_id is None:
            self._instance_id = lease
        return self._instance_id

    def instance_id(self) -> int:
        if self._instance_id is None:
            raise RuntimeError("no lease yet: serve an endpoint or call primary_lease() first")
        return self._instance_id

    def namespace(self, name: str) -> Namespace:
        return Namespace(self, name)

    def endpoint(self, path: str) -> Endpoint:
        """The endpoint at `ns.comp.ep` (or `dyn://ns.comp.ep`), as `dynamo-run` names them."""
        namespace, component, endpoint = parse_endpoint_path(path)
        return self.namespace(namespace).component(component).endpoint(endpoint)

    def add_closer(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run `closer` when the runtime closes (clients stop following etcd)."""
        self._closers.append(closer)

    def remove_closer(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Forget a closer that already ran (a client closed before the runtime)."""
        with contextlib.suppress(ValueError):
            self._closers.remove(closer)

    def register_endpoint_key(self, endpoint_path: str, key: str) -> None:
        """Keys (model entries) that leave with an endpoint when it stops serving."""
        self._endpoint_keys.setdefault(endpoint_path, []).append(key)

    def keys_for_endpoint(self, endpoint_path: str) -> list[str]:
        return self._endpoint_keys.get(endpoint_path, [])

    def shutdown(self) -> None:
        """Begin a graceful shutdown: endpoints stop taking requests and finish in-flight ones."""
        self.shutting_down.set()

    async def close(self) -> None:
        self.shutting_down.set()
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                await closer()
        await self.etcd.close(revoke=True)
        if self._tcp_client is not None:
            await self._tcp_client.close()
        if self._tcp_server is not None:
            await self._tcp_server.close()
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.drain()


def install_shutdown_signals(runtime: DistributedRuntime) -> None:
    """SIGINT/SIGTERM: graceful shutdown; a second one exits at once."""
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if runtime.shutting_down.is_set():
            # A second signal: the in-flight streams are not worth waiting for.
            raise SystemExit(128 + sig)
        log.info("%s: finishing in-flight requests, then leaving", sig.name)
        runtime.shutdown()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)


def dynamo_worker(static: bool = False) -> Callable:
    """Decorate `async def worker(runtime, ...)`: connect, handle signals, clean up on exit.

    `static=True` (upstream's static mode) is refused by `DistributedRuntime`."""

    def decorate(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            runtime = DistributedRuntime(asyncio.get_running_loop(), static)
            install_shutdown_signals(runtime)
            try:
                if not await runtime.connect_unless_stopped():
                    return None
                await runtime.primary_lease()  # so `endpoint.lease_id()` works at once
                return await fn(runtime, *args, **kwargs)
            finally:
                await runtime.close()

        return wrapper

    return decorate
