"""Where files too big for a discovery record go (a model card's tokenizer.json and configs): the
NATS object store beside etcd (upstream's), or a directory beside the `file` discovery backend,
so a frontend and its workers on one host need no NATS at all."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

log = logging.getLogger(__name__)

#: How long a read waits for the next chunk of an object before it reads the object again.
_STALL_SECONDS = 5.0
#: Reads of one object (each from its latest meta) before `get` gives up.
_READ_ATTEMPTS = 2


class ObjectUnreadableError(LookupError):
    """An object's chunks never came: its meta kept naming chunks that are gone."""


class ObjectStore(Protocol):
    """Named files in buckets."""

    async def put_files(self, bucket: str, files: dict[str, bytes]) -> None: ...

    async def get(self, bucket: str, name: str) -> bytes: ...


class NatsObjects:
    """JetStream's object store: one NATS object-store bucket per model."""

    def __init__(self, nc: Any):
        self._js = nc.jetstream()

    async def put_files(self, bucket: str, files: dict[str, bytes]) -> None:
        try:
            store = await self._js.object_store(bucket)
        except Exception:  # nats-py raises its own "bucket not found" per server version
            store = await self._js.create_object_store(bucket)
        for name, data in files.items():
            await store.put(name, data)

    async def get(self, bucket: str, name: str) -> bytes:
        """The object's bytes, read from its latest meta; `ObjectUnreadableError` if its chunks
        stop coming `_READ_ATTEMPTS` times in a row.

        Not nats-py's `ObjectStore.get`: that waits forever for chunks that are gone, which
        happens when another writer replaces the object between our reading its meta and its
        chunks (every worker of a model uploads the same card files, and nats-py's `put` purges
        the chunks of the meta it replaces). A frontend's model watcher waited there for good,
        and listed no model after it. Here a read that gets no chunk for `_STALL_SECONDS` is
        abandoned and the object read again from its new meta.
        """
        store = await self._js.object_store(bucket)
        for attempt in range(1, _READ_ATTEMPTS + 1):
            info = await store.get_info(name)
            data = await self._read_chunks(bucket, info)
            if data is not None:
                return data
            if attempt < _READ_ATTEMPTS:
                log.warning(
                    "object %s in bucket %s: its chunks stopped coming (replaced meanwhile?); "
                    "reading it again",
                    name,
                    bucket,
                )
        raise ObjectUnreadableError(
            f"object {name} in bucket {bucket}: its chunks stopped coming {_READ_ATTEMPTS} times"
        )

    async def _read_chunks(self, bucket: str, info: Any) -> bytes | None:
        """The chunks `info` names, checked against its digest; None when they stop coming."""
        if not info.size:
            return b""
        subject = f"$O.{bucket}.C.{info.nuid}"
        subscription = await self._js.subscribe(subject, ordered_consumer=True)
        data = bytearray()
        try:
            while True:
                try:
                    msg = await subscription.next_msg(timeout=_STALL_SECONDS)
                except TimeoutError:  # nats-py raises its own, a subclass
                    return None
                data += msg.data
                if msg.metadata.num_pending == 0:
                    break
        finally:
            await subscription.unsubscribe()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
        if info.digest.split("=", 1)[-1].rstrip("=") != digest.rstrip("="):
            return None  # not the bytes the meta names: read again
        return bytes(data)


class FileObjects:
    """`{root}/objects/{bucket}/{name}`, written to a temporary file and renamed into place."""

    def __init__(self, root: Path):
        self.root = root / "objects"

    def _path(self, bucket: str, name: str) -> Path:
        return self.root / quote(bucket, safe="") / quote(name, safe="")

    async def put_files(self, bucket: str, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            path = self._path(bucket, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
            tmp.write_bytes(data)
            os.replace(tmp, path)

    async def get(self, bucket: str, name: str) -> bytes:
        return self._path(bucket, name).read_bytes()
