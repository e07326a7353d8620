"""etcd for discovery: a primary lease kept alive, keys bound to it, and prefix watches.

Built on `aetcd` (async, maintained; see docs/decisions.md). Better than upstream on one point its
users hit (#3493): losing the lease (etcd down longer than the TTL) does not kill the process. The
keeper logs it, waits for etcd, takes a new lease and writes every key it owned again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aetcd

from dynamo.runtime.config import RuntimeConfig

log = logging.getLogger(__name__)

_RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A key appeared or changed (`put`) or went away (`delete`)."""

    kind: str
    key: str
    value: bytes


class Etcd:
    """One etcd connection for a process: the lease, the keys on it, and watches."""

    def __init__(self, config: RuntimeConfig):
        self.config = config
        host, port = config.etcd_host_port()
        self._client = aetcd.Client(host=host, port=port, timeout=5)
        self._lease_id: int | None = None
        self._owned: dict[str, bytes] = {}
        self._keeper: asyncio.Task | None = None
        self._lease_ready = asyncio.Event()
        self.on_lease_change: list[Callable[[int], Awaitable[None]]] = []

    @property
    def url(self) -> str:
        return self.config.etcd_endpoints[0]

    async def connect(self) -> None:
        """Wait until etcd answers, saying once (not on every retry) that it does not."""
        warned = False
        while True:
            try:
                await self._client.connect()
                await self._client.get(b"dynamo-ping")
                if warned:
                    log.info("connected to etcd at %s", self.url)
                return
            except (aetcd.exceptions.ClientError, OSError) as e:
                if not warned:
                    log.warning(
                        "cannot reach etcd at %s (%s); retrying (set ETCD_ENDPOINTS)",
                        self.url,
                        type(e).__name__,
                    )
                    warned = True
                await asyncio.sleep(_RETRY_SECONDS)

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
        while True:
            await asyncio.sleep(interval)
            try:
                reply = await self._client.refresh_lease(self._lease_id)
                if reply.TTL > 0:
                    continue
                log.warning("etcd lease %x expired; registering again", self._lease_id)
            except (aetcd.exceptions.ClientError, OSError) as e:
                log.warning(
                    "etcd lease keep-alive failed (%s); still serving, will register again when etcd is back",
                    type(e).__name__,
                )
            await self._recover()

    async def _recover(self) -> None:
        """Take a new lease once etcd answers, and write every owned key again."""
        old = self._lease_id
        self._lease_ready.clear()
        while True:
            try:
                # A short outage keeps the old lease: only replace it if etcd says it is gone.
                with contextlib.suppress(aetcd.exceptions.ClientError):
                    if old is not None and (await self._client.refresh_lease(old)).TTL > 0:
                        for key, value in self._owned.items():
                            await self._client.put(key.encode(), value, lease=old)
                        self._lease_ready.set()
                        log.info("etcd is back; lease %x survived", old)
                        return
                await self._grant()
                for key, value in self._owned.items():
                    await self._client.put(key.encode(), value, lease=self._lease_id)
                break
            except (aetcd.exceptions.ClientError, OSError):
                await asyncio.sleep(_RETRY_SECONDS)
        log.info(
            "etcd is back: new lease %x, %d keys registered again", self._lease_id, len(self._owned)
        )
        for callback in self.on_lease_change:
            await callback(self._lease_id)

    async def put_leased(self, key: str, value: bytes) -> None:
        """Write a key bound to the primary lease; it is written again after a lease loss."""
        lease = await self.primary_lease()
        self._owned[key] = value
        try:
            await self._client.put(key.encode(), value, lease=lease)
        except (aetcd.exceptions.ClientError, OSError) as e:
            # The keeper writes every owned key again once etcd answers.
            log.warning(
                "etcd write of %s failed (%s); it will be written when etcd is back",
                key,
                type(e).__name__,
            )

    async def delete_owned(self, key: str) -> None:
        self._owned.pop(key, None)
        with contextlib.suppress(aetcd.exceptions.ClientError):
            await self._client.delete(key.encode())

    async def get(self, key: str) -> bytes | None:
        result = await self._client.get(key.encode())
        return result.value if result is not None else None

    async def get_prefix(self, prefix: str) -> dict[str, bytes]:
        result = await self._client.get_prefix(prefix.encode())
        return {kv.key.decode(): kv.value for kv in result}

    async def watch_prefix(self, prefix: str) -> AsyncIterator[WatchEvent]:
        """Existing keys first (as puts), then changes; survives etcd restarts by re-listing."""
        known: dict[str, bytes] = {}
        warned = False
        while True:
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
                start = revision + 1 if revision is not None else None
                watch = await self._client.watch_prefix(prefix.encode(), start_revision=start)
                async for event in watch:
                    key = event.kv.key.decode()
                    if event.kind == aetcd.EventKind.PUT:
                        known[key] = event.kv.value
                        yield WatchEvent("put", key, event.kv.value)
                    else:
                        known.pop(key, None)
                        yield WatchEvent("delete", key, b"")
            except (aetcd.exceptions.ClientError, OSError) as e:
                if not warned:
                    log.warning("etcd watch on %s lost (%s); retrying", prefix, type(e).__name__)
                    warned = True
                await asyncio.sleep(_RETRY_SECONDS)

    async def close(self, revoke: bool = True) -> None:
        """Stop the keeper and revoke the lease, which deletes every key bound to it at once."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if revoke and self._lease_id is not None:
            with contextlib.suppress(aetcd.exceptions.ClientError, OSError):
                await asyncio.wait_for(self._client.revoke_lease(self._lease_id), 2)
        with contextlib.suppress(Exception):
            await self._client.close()
