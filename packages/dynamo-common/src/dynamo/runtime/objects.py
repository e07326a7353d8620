"""Where files too big for a discovery record go (a model card's tokenizer.json and configs): the
NATS object store beside etcd (upstream's), or a directory beside the `file` discovery backend,
so a frontend and its workers on one host need no NATS at all."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote


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
        store = await self._js.object_store(bucket)
        return bytes((await store.get(name)).data or b"")


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
