"""Discovery without etcd: a directory of lease-bound records, for processes on one host
(`--discovery-backend file`, as upstream's file backend; the directory is `DYN_FILE_KV`).

    {root}/leases/{lease:x}        a process's lease: its mtime is refreshed every TTL/2;
                                   the file holds its host name and pid
    {root}/keys/{quoted key}       one key: a JSON header line {"key", "lease"}, then the value
    {root}/objects/{bucket}/{name} files too big for a record (model card files; see FileObjects)

A key is live while its lease is: a lease not refreshed for a TTL, or one whose process is gone
(same host, pid no longer running), is expired, and whoever notices removes it and its keys.
Writes go to a temporary file renamed into place, so a reader never sees half a record. Watches
poll the directory (one scanner per process, every 0.1 s) and report puts and deletes the way
`Etcd.watch_prefix` does; the interface is `Etcd`'s, so the runtime uses either.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import orjson

from dynamo.runtime.config import RuntimeConfig
from dynamo.runtime.tasks import stop_tasks
from dynamo.runtime.watch_event import WatchEvent

log = logging.getLogger(__name__)

SCAN_SECONDS = 0.1
_HOST = socket.gethostname()


def default_root() -> Path:
    """Upstream's default: `dynamo_store_kv` in the temporary directory."""
    return Path(tempfile.gettempdir()) / "dynamo_store_kv"


def _file_name(key: str) -> str:
    name = quote(key, safe="")
    if len(name) > 200:  # file names stop at 255 bytes; the header keeps the real key
        name = name[:150] + "~" + hashlib.sha256(key.encode()).hexdigest()[:32]
    return name


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _process_gone(host: str, pid: int) -> bool:
    if host != _HOST:
        return False  # another host (or container) sharing the directory: trust the TTL
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


class FileDiscovery:
    """One process's view of the directory: its lease, the keys on it, and watches."""

    def __init__(self, config: RuntimeConfig):
        self.config = config
        self.root = Path(config.file_kv_root) if config.file_kv_root else default_root()
        self._leases = self.root / "leases"
        self._keys = self.root / "keys"
        self._lease_id: int | None = None
        self._owned: dict[str, bytes] = {}
        self._guards: dict[str, asyncio.Task] = {}
        self._keeper: asyncio.Task | None = None
        self._scanner: asyncio.Task | None = None
        self._closed = False
        #: What the last scan found live, and an event set (and replaced) after each scan.
        self._live: dict[str, bytes] = {}
        self._scanned = asyncio.Event()
        self._cache: dict[str, tuple[int, int, str, int, bytes]] = {}
        self.on_lease_change: list[Callable[[int], Awaitable[None]]] = []

    @property
    def url(self) -> str:
        return f"file://{self.root}"

    @property
    def lease_id(self) -> int | None:
        return self._lease_id

    async def connect(self) -> None:
        """Create the directory if needed (nothing to wait for)."""
        self._leases.mkdir(parents=True, exist_ok=True)
        self._keys.mkdir(parents=True, exist_ok=True)

    # -- the lease -----------------------------------------------------------------------

    async def primary_lease(self) -> int:
        """The process's lease id, created on first use and refreshed every TTL/2."""
        if self._lease_id is None:
            self._lease_id = secrets.randbits(63) or 1
            self._write_lease()
            self._keeper = asyncio.create_task(self._keep_alive(), name="file-lease-keeper")
        return self._lease_id

    def _lease_path(self, lease: int) -> Path:
        return self._leases / f"{lease:x}"

    def _write_lease(self) -> None:
        assert self._lease_id is not None
        body = orjson.dumps({"host": _HOST, "pid": os.getpid(), "ttl": self.config.lease_ttl})
        _write_atomically(self._lease_path(self._lease_id), body)

    async def _keep_alive(self) -> None:
        assert self._lease_id is not None
        path = self._lease_path(self._lease_id)
        while True:
            await asyncio.sleep(self.config.lease_ttl / 2)
            try:
                os.utime(path)
            except FileNotFoundError:
                # Taken for expired (this process was stopped for longer than the TTL): the
                # same lease again, and every key it owned.
                log.warning("file lease %x had expired; registering again", self._lease_id)
                self._write_lease()
                for key, value in list(self._owned.items()):
                    self._write_key(key, value)

    def _lease_live(self, lease: int, now: float) -> bool:
        path = self._lease_path(lease)
        try:
            stat = path.stat()
            if now - stat.st_mtime > self.config.lease_ttl:
                return False
            owner = orjson.loads(path.read_bytes())
            return not _process_gone(owner["host"], owner["pid"])
        except (FileNotFoundError, ValueError, KeyError):
            return False

    # -- keys ----------------------------------------------------------------------------

    def _write_key(self, key: str, value: bytes) -> None:
        header = orjson.dumps({"key": key, "lease": self._lease_id})
        _write_atomically(self._keys / _file_name(key), header + b"\n" + value)

    async def put_leased(self, key: str, value: bytes, *, shared: bool = False) -> None:
        """Write a key bound to this process's lease; `shared` as `Etcd.put_leased`: another
        process of the same key deleting it (or its lease expiring) makes us write it again."""
        await self.primary_lease()
        self._owned[key] = value
        self._write_key(key, value)
        if shared and key not in self._guards:
            self._guards[key] = asyncio.create_task(self._guard(key), name=f"file-guard {key}")

    async def _guard(self, key: str) -> None:
        async for event in self.watch_prefix(key):
            if event.key == key and event.kind == "delete" and key in self._owned:
                self._write_key(key, self._owned[key])

    async def delete_owned(self, key: str) -> None:
        self._owned.pop(key, None)
        guard = self._guards.pop(key, None)
        if guard is not None:
            guard.cancel()
        with contextlib.suppress(FileNotFoundError):
            (self._keys / _file_name(key)).unlink()

    def _read_all(self) -> dict[str, bytes]:
        """Every live key and its value; expired leases and their keys are removed."""
        now = time.time()
        live_leases: dict[int, bool] = {}
        found: dict[str, bytes] = {}
        cache: dict[str, tuple[int, int, str, int, bytes]] = {}
        try:
            entries = list(os.scandir(self._keys))
        except FileNotFoundError:
            return found
        for entry in entries:
            if entry.name.startswith("."):
                continue  # a write in progress
            try:
                stat = entry.stat()
                cached = self._cache.get(entry.name)
                if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
                    key, lease, value = cached[2:]
                else:
                    with open(entry.path, "rb") as f:
                        header = orjson.loads(f.readline())
                        value = f.read()
                    key, lease = header["key"], header["lease"]
            except (FileNotFoundError, ValueError, KeyError):
                continue
            cache[entry.name] = (stat.st_mtime_ns, stat.st_size, key, lease, value)
            if lease not in live_leases:
                live_leases[lease] = lease == self._lease_id or self._lease_live(lease, now)
            if live_leases[lease]:
                found[key] = value
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        for lease, live in live_leases.items():
            if not live:
                with contextlib.suppress(FileNotFoundError):
                    self._lease_path(lease).unlink()
        self._cache = cache
        return found

    async def get(self, key: str) -> bytes | None:
        return (await self.get_prefix(key)).get(key)

    async def get_prefix(self, prefix: str) -> dict[str, bytes]:
        return {k: v for k, v in self._read_all().items() if k.startswith(prefix)}

    async def _scan(self) -> None:
        while True:
            self._live = self._read_all()
            scanned, self._scanned = self._scanned, asyncio.Event()
            scanned.set()
            await asyncio.sleep(SCAN_SECONDS)

    async def watch_prefix(self, prefix: str) -> AsyncIterator[WatchEvent]:
        """Existing keys first (as puts), then each change the directory scans find."""
        if self._scanner is None:
            self._live = self._read_all()
            self._scanner = asyncio.create_task(self._scan(), name="file-discovery-scan")
        known: dict[str, bytes] = {}
        while not self._closed:
            current = {k: v for k, v in self._live.items() if k.startswith(prefix)}
            for key in [k for k in known if k not in current]:
                del known[key]
                yield WatchEvent("delete", key, b"")
            for key, value in current.items():
                if known.get(key) != value:
                    known[key] = value
                    yield WatchEvent("put", key, value)
            await self._scanned.wait()

    async def close(self, revoke: bool = True) -> None:
        """Stop the keeper and the scans; `revoke` removes the lease and every key on it."""
        self._closed = True
        tasks = [*self._guards.values(), *(t for t in (self._keeper, self._scanner) if t)]
        await stop_tasks(tasks)
        self._guards.clear()
        self._scanned.set()  # a watch still waiting sees the close
        if revoke and self._lease_id is not None:
            for key in list(self._owned):
                await self.delete_owned(key)
            with contextlib.suppress(FileNotFoundError):
                self._lease_path(self._lease_id).unlink()
