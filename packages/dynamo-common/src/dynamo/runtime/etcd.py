"""etcd for discovery: a primary lease kept alive, keys bound to it, and prefix watches.

Built on `aetcd` (async, on grpcio; see docs/decisions.md). Better than upstream on one point its
users hit (#3493): losing the lease (etcd down longer than the TTL) does not kill the process. The
keeper logs it, waits for etcd, takes a new lease and writes every key it owned again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aetcd
import aetcd.exceptions
import aetcd.rpc
import aetcd.watcher
import grpc

from dynamo.runtime.auth import ControlPlaneAuthError, EtcdTls, etcd_options, is_auth_refusal
from dynamo.runtime.backoff import Backoff
from dynamo.runtime.config import RuntimeConfig, host_port
from dynamo.runtime.tasks import stop_tasks
from dynamo.runtime.watch_event import WatchEvent

log = logging.getLogger(__name__)

# gRPC keepalive pings find a half-open connection (etcd's host gone, no RST) within ~15 s, so a
# watch cannot hang forever. etcd refuses pings more often than every 5 s (too_many_pings).
_GRPC_OPTIONS = {
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.max_pings_without_data": 0,
    # gRPC's own reconnect back-off grows to 120 s; an etcd that is back should be used at once.
    "grpc.initial_reconnect_backoff_ms": 250,
    "grpc.min_reconnect_backoff_ms": 250,
    "grpc.max_reconnect_backoff_ms": 2_000,
}
_ERRORS = (aetcd.exceptions.ClientError, OSError, asyncio.TimeoutError)


class _TlsClient(aetcd.Client):
    """`aetcd.Client` over a TLS channel. aetcd 1.0 has no TLS setting: its `connect` always
    opens a plaintext channel. This is that `connect` with `grpc.aio.secure_channel` instead (and
    its user authentication, sent over the TLS channel); the stubs, the watcher and every call
    are aetcd's own. aetcd is pinned in the lock file, and the TLS tests exercise this."""

    def __init__(self, credentials: grpc.ChannelCredentials, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._credentials = credentials

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self._is_connecting:  # another task is connecting: wait for it, as aetcd does
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        self._is_connecting = True
        try:
            target = f"{self._host}:{self._port}"
            channel = grpc.aio.secure_channel(
                target, self._credentials, options=list(self._options.items())
            )
            self.channel = channel
            if self._username is not None and self._password is not None:
                self.auth_stub = aetcd.rpc.AuthStub(channel)
                request = aetcd.rpc.AuthenticateRequest(
                    name=self._username, password=self._password
                )
                try:
                    reply = await self.auth_stub.Authenticate(request, timeout=self._timeout)
                except grpc.aio.AioRpcError as e:
                    aetcd.exceptions._handle_exception(e)  # aetcd's error classes, as connect's
                    raise
                self.metadata = (("token", reply.token),)
            self.kvstub = aetcd.rpc.KVStub(channel)
            self.clusterstub = aetcd.rpc.ClusterStub(channel)
            self.leasestub = aetcd.rpc.LeaseStub(channel)
            self.maintenancestub = aetcd.rpc.MaintenanceStub(channel)
            self._watcher = aetcd.watcher.Watcher(
                aetcd.rpc.WatchStub(channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()
        finally:
            self._is_connecting = False


class Etcd:
    """One etcd connection for a process: the lease, the keys on it, and watches."""

    def __init__(self, config: RuntimeConfig):
        self.config = config
        self._endpoint = 0
        self._client = self._new_client()
        self._lease_id: int | None = None
        self._owned: dict[str, bytes] = {}
        self._guards: dict[str, asyncio.Task] = {}
        self._keeper: asyncio.Task | None = None
        self._closed = False
        self._lease_ready = asyncio.Event()
        self.on_lease_change: list[Callable[[int], Awaitable[None]]] = []

    def _new_client(self) -> aetcd.Client:
        host, port = host_port(self.url, 2379)
        options = etcd_options()
        tls: EtcdTls | None = options.pop("tls", None)
        if tls is None and self.url.lower().startswith("https://"):
            tls = EtcdTls()  # the system's CAs, no client certificate
        if tls is None:
            return aetcd.Client(host=host, port=port, timeout=5, options=_GRPC_OPTIONS, **options)
        credentials = grpc.ssl_channel_credentials(tls.ca, tls.key, tls.cert)
        return _TlsClient(
            credentials, host=host, port=port, timeout=5, options=_GRPC_OPTIONS, **options
        )

    @property
    def url(self) -> str:
        return self.config.etcd_endpoints[self._endpoint]

    @property
    def lease_id(self) -> int | None:
        """The lease the keys are on now (it changes when a lost lease is replaced)."""
        return self._lease_id

    async def connect(self) -> None:
        """Wait until etcd answers, saying once (not on every retry) that it does not.

        With several `ETCD_ENDPOINTS`, each failed attempt moves on to the next one.
        """
        warned = False
        backoff = Backoff()
        while True:
            try:
                await self._client.connect()
                await self._client.get(b"dynamo-ping")
                if warned:
                    log.info("connected to etcd at %s", self.url)
                return
            except _ERRORS as e:
                if is_auth_refusal(e):
                    raise ControlPlaneAuthError(
                        f"etcd at {self.url} refused our credentials ({e}): check "
                        "ETCD_AUTH_USERNAME and ETCD_AUTH_PASSWORD, ETCD_AUTH_CA, "
                        "ETCD_AUTH_CLIENT_CERT and ETCD_AUTH_CLIENT_KEY"
                    ) from None
                if not warned:
                    log.warning(
                        "cannot reach etcd at %s (%s); retrying (set ETCD_ENDPOINTS)",
                        self.url,
                        type(e).__name__,
                    )
                    warned = True
                if len(self.config.etcd_endpoints) > 1:
                    with contextlib.suppress(Exception):
                        await self._client.close()
                    self._endpoint = (self._endpoint + 1) % len(self.config.etcd_endpoints)
                    self._client = self._new_client()
                await backoff.sleep()

    # -- the primary lease ------------------------------------------------------------------

    async def primary_lease(self) -> int:
        """The process's lease id, created on first use and kept alive every TTL/2."""
        if self._keeper is None:
            await self._grant()
            self._keeper = asyncio.create_task(self._keep_alive(), name="etcd-lease-keeper")
        await self._lease_ready.wait()
        assert self._lease_id is not None
        return self._lease_id

    async def _grant(self) -> None:
        lease = await self._client.lease(self.config.lease_ttl)
        self._lease_id = lease.id
        self._lease_ready.set()
        log.debug("etcd lease %x granted (ttl %ds)", lease.id, self.config.lease_ttl)

    async def _keep_alive(self) -> None:
        interval = self.config.lease_ttl / 2
        await self._lease_ready.wait()
        while True:
            await asyncio.sleep(interval)
            try:
                reply = await self._client.refresh_lease(self._lease_id)
                if reply is not None and reply.TTL > 0:
                    continue
                log.warning("etcd lease %x expired; registering again", self._lease_id)
            except Exception as e:  # any failure here must not end the keeper
                log.warning(
                    "etcd lease keep-alive to %s failed (%s); still serving, will register again "
                    "when etcd is back",
                    self.url,
                    type(e).__name__,
                )
            await self._recover()

    async def _recover(self) -> None:
        """Once etcd answers: keep the lease if it survived, else take a new one; write all keys."""
        old = self._lease_id
        self._lease_ready.clear()
        backoff = Backoff()
        while True:
            try:
                # A short outage keeps the old lease: only replace it if etcd says it is gone.
                survived = False
                if old is not None:
                    with contextlib.suppress(aetcd.exceptions.ClientError):
                        reply = await self._client.refresh_lease(old)
                        survived = reply is not None and reply.TTL > 0
                if not survived:
                    lease = await self._client.lease(self.config.lease_ttl)
                    self._lease_id = lease.id
                for key, value in list(self._owned.items()):
                    await self._client.put(key.encode(), value, lease=self._lease_id)
                break
            except Exception:
                await backoff.sleep()
        self._lease_ready.set()
        if self._lease_id == old:
            log.info("etcd is back at %s; lease %x survived", self.url, old)
            return
        log.info(
            "etcd is back at %s: new lease %x (was %x), %d keys registered again",
            self.url,
            self._lease_id,
            old or 0,
            len(self._owned),
        )
        lease_id = self._lease_id
        assert lease_id is not None  # taken above
        for callback in self.on_lease_change:
            await callback(lease_id)

    # -- keys -----------------------------------------------------------------------------

    async def put_leased(self, key: str, value: bytes, *, shared: bool = False) -> None:
        """Write a key bound to the primary lease; it is written again after a lease loss.

        `shared`: other processes write the same key (a model card every worker of the model
        publishes). When one of them leaves, its revoked lease deletes the key; we put it back
        for as long as we own it.
        """
        lease = await self.primary_lease()
        self._owned[key] = value
        try:
            await self._client.put(key.encode(), value, lease=lease)
        except _ERRORS as e:
            # The keeper writes every owned key again once etcd answers.
            log.warning(
                "etcd write of %s failed (%s); it will be written when etcd is back",
                key,
                type(e).__name__,
            )
        if shared and key not in self._guards:
            self._guards[key] = asyncio.create_task(self._guard(key), name=f"etcd-guard {key}")

    async def _guard(self, key: str) -> None:
        async for event in self.watch_prefix(key):
            if event.key != key or event.kind != "delete":
                continue
            value = self._owned.get(key)
            if value is None:
                return
            if self._lease_ready.is_set():
                with contextlib.suppress(*_ERRORS):
                    await self._client.put(key.encode(), value, lease=self._lease_id)
                    log.debug("put back shared key %s", key)

    async def delete_owned(self, key: str) -> None:
        """Stop owning a key and delete it now (not waiting for the lease to go)."""
        self._owned.pop(key, None)
        guard = self._guards.pop(key, None)
        if guard is not None:
            guard.cancel()
        with contextlib.suppress(*_ERRORS):
            await self._client.delete(key.encode())

    async def get(self, key: str) -> bytes | None:
        result = await self._client.get(key.encode())
        return result.value if result is not None else None

    async def get_prefix(self, prefix: str) -> dict[str, bytes]:
        result = await self._client.get_prefix(prefix.encode())
        return {kv.key.decode(): kv.value for kv in result}

    async def watch_prefix(self, prefix: str) -> AsyncIterator[WatchEvent]:
        """Existing keys first (as puts), then changes; survives etcd restarts by re-listing.

        After a lost watch the prefix is listed again and compared with what this watch had
        reported, so the caller sees the deletes and puts it missed, once each.
        """
        known: dict[str, bytes] = {}
        warned = False
        backoff = Backoff()
        while not self._closed:
            try:
                current = await self._client.get_prefix(prefix.encode())
                revision = current.header.revision if current.header else None
                listed = {kv.key.decode(): kv.value for kv in current}
                for key in [k for k in known if k not in listed]:
                    known.pop(key)
                    yield WatchEvent("delete", key, b"")
                for key, value in listed.items():
                    if known.get(key) != value:
                        known[key] = value
                        yield WatchEvent("put", key, value)
                if warned:
                    log.info("etcd watch on %s resumed", prefix)
                    warned = False
                backoff.reset()
                start = revision + 1 if revision is not None else None
                watch = await self._client.watch_prefix(prefix.encode(), start_revision=start)
                try:
                    async for event in watch:
                        key = event.kv.key.decode()
                        if event.kind == aetcd.EventKind.PUT:
                            known[key] = event.kv.value
                            yield WatchEvent("put", key, event.kv.value)
                        elif known.pop(key, None) is not None:
                            yield WatchEvent("delete", key, b"")
                finally:
                    # A closed or cancelled watch must not stay registered on the shared stream
                    # (a frontend opens and closes one per model as models come and go).
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(watch.cancel(), 1)
            except _ERRORS as e:
                if not warned:
                    log.warning(
                        "etcd watch on %s at %s lost (%s); retrying",
                        prefix,
                        self.url,
                        type(e).__name__,
                    )
                    warned = True
                await backoff.sleep()

    async def close(self, revoke: bool = True) -> None:
        """Stop the keeper and revoke the lease, which deletes every key bound to it at once."""
        self._closed = True
        tasks = [*self._guards.values(), *([self._keeper] if self._keeper else [])]
        await stop_tasks(tasks)
        self._guards.clear()
        if revoke and self._lease_id is not None:
            with contextlib.suppress(*_ERRORS):
                await asyncio.wait_for(self._client.revoke_lease(self._lease_id), 2)
        with contextlib.suppress(Exception):
            await self._client.close()
