"""The `file` discovery backend: records in a directory, bound to leases that expire, watched by
polling; and the object store beside it. Real processes, a real directory, no servers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import orjson
import pytest

from dynamo.runtime import RuntimeConfig
from dynamo.runtime.errors import RuntimeConfigError
from dynamo.runtime.file_discovery import FileDiscovery
from dynamo.runtime.objects import FileObjects


def config(root, ttl: int = 10) -> RuntimeConfig:
    return RuntimeConfig(
        ("http://unused:2379",),
        "nats://unused:4222",
        lease_ttl=ttl,
        discovery_backend="file",
        file_kv_root=str(root),
        nats_configured=False,
    )


async def started(root, ttl: int = 10) -> FileDiscovery:
    store = FileDiscovery(config(root, ttl))
    await store.connect()
    return store


async def next_event(watch, within: float = 3.0):
    return await asyncio.wait_for(anext(watch), within)


async def test_keys_are_written_read_and_deleted(tmp_path):
    a = await started(tmp_path)
    b = await started(tmp_path)  # another process's view of the same directory
    try:
        await a.put_leased("instances/ns/c/ep:1f", b"one")
        await a.put_leased("models/x/y", b"two")
        await a.put_leased("a/" + "k" * 400, b"long key")  # beyond a file name's length
        assert await b.get("instances/ns/c/ep:1f") == b"one"
        assert await b.get_prefix("instances/") == {"instances/ns/c/ep:1f": b"one"}
        assert await b.get("a/" + "k" * 400) == b"long key"
        await a.delete_owned("models/x/y")
        assert await b.get("models/x/y") is None
    finally:
        await a.close()
        await b.close()
    # Closing revoked the lease: nothing of it is left.
    assert await (await started(tmp_path)).get_prefix("") == {}
    assert os.listdir(tmp_path / "leases") == []


async def test_a_watch_sees_what_is_there_then_puts_and_deletes(tmp_path):
    a = await started(tmp_path)
    b = await started(tmp_path)
    await a.put_leased("models/one", b"1")
    watch = b.watch_prefix("models/")
    try:
        assert (await next_event(watch)).key == "models/one"
        await a.put_leased("models/two", b"2")
        await a.put_leased("other/three", b"3")  # not under the prefix
        event = await next_event(watch)
        assert (event.kind, event.key, event.value) == ("put", "models/two", b"2")
        await a.put_leased("models/two", b"2b")
        assert (await next_event(watch)).value == b"2b"
        await a.close()  # revoke: both keys go
        gone = {(await next_event(watch)).key, (await next_event(watch)).key}
        assert gone == {"models/one", "models/two"}
    finally:
        await watch.aclose()
        await b.close()


WRITER = """
import asyncio, sys, time
from dynamo.runtime import RuntimeConfig
from dynamo.runtime.file_discovery import FileDiscovery

async def main():
    store = FileDiscovery(RuntimeConfig(("x",), "y", lease_ttl=int(sys.argv[2]),
                          discovery_backend="file", file_kv_root=sys.argv[1]))
    await store.connect()
    await store.put_leased("instances/dead:1", b"me")
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_killed_process_s_records_expire_at_once_on_its_host(tmp_path):
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is awaited
        [sys.executable, "-c", WRITER, str(tmp_path), "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        watcher = await started(tmp_path)
        watch = watcher.watch_prefix("instances/")
        assert (await next_event(watch)).kind == "put"
        proc.kill()
        proc.wait()
        killed = time.monotonic()
        event = await next_event(watch)
        # Its pid is gone: no need to wait out the 30 s lease.
        assert (event.kind, event.key) == ("delete", "instances/dead:1")
        assert time.monotonic() - killed < 1.0
        assert os.listdir(tmp_path / "leases") == []
        await watch.aclose()
        await watcher.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


async def test_a_lease_not_refreshed_within_its_ttl_expires(tmp_path):
    """A lease of another host (a shared directory) is judged by its age alone."""
    store = await started(tmp_path, ttl=1)
    (tmp_path / "leases" / "abc").write_bytes(
        orjson.dumps({"host": "elsewhere", "pid": 1, "ttl": 1})
    )
    (tmp_path / "keys" / "k").write_bytes(orjson.dumps({"key": "k", "lease": 0xABC}) + b"\nv")
    assert await store.get("k") == b"v"
    old = time.time() - 5
    os.utime(tmp_path / "leases" / "abc", (old, old))
    assert await store.get("k") is None
    assert not (tmp_path / "keys" / "k").exists()
    await store.close()


async def test_the_keeper_refreshes_the_lease(tmp_path):
    store = await started(tmp_path, ttl=1)
    await store.put_leased("k", b"v")
    await asyncio.sleep(2.2)  # over two TTLs
    other = await started(tmp_path, ttl=1)
    assert await other.get("k") == b"v"
    await store.close()
    await other.close()


async def test_a_shared_key_stays_while_one_owner_does(tmp_path):
    a = await started(tmp_path)
    b = await started(tmp_path)
    await a.put_leased("mdc/model", b"card", shared=True)
    await b.put_leased("mdc/model", b"card", shared=True)
    await b.close()  # the last writer leaves and deletes the key
    deadline = time.monotonic() + 3
    reader = await started(tmp_path)
    while await reader.get("mdc/model") != b"card":
        assert time.monotonic() < deadline, "the remaining owner did not write it again"
        await asyncio.sleep(0.05)
    await a.close()
    await reader.close()


async def test_objects_round_trip(tmp_path):
    store = FileObjects(tmp_path)
    await store.put_files("my-model", {"tokenizer.json": b"{}", "config.json": b"[1]"})
    assert await FileObjects(tmp_path).get("my-model", "config.json") == b"[1]"
    with pytest.raises(FileNotFoundError):
        await store.get("my-model", "missing.json")


def test_settings_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DYN_DISCOVERY_BACKEND", "file")
    monkeypatch.setenv("DYN_FILE_KV", str(tmp_path))
    monkeypatch.setenv("DYN_REQUEST_PLANE", "tcp")
    monkeypatch.delenv("NATS_SERVER", raising=False)
    settings = RuntimeConfig.from_env()
    assert (settings.discovery_backend, settings.file_kv_root) == ("file", str(tmp_path))
    assert not settings.needs_nats  # nothing else to install
    monkeypatch.setenv("NATS_SERVER", "nats://127.0.0.1:4222")
    assert RuntimeConfig.from_env().needs_nats  # set for KV events
    monkeypatch.setenv("DYN_DISCOVERY_BACKEND", "zookeeper")
    with pytest.raises(RuntimeConfigError, match="DYN_DISCOVERY_BACKEND='zookeeper'"):
        RuntimeConfig.from_env()
