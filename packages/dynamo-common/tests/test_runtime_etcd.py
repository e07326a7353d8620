"""`dynamo.runtime.etcd` on aetcd against a real etcd 3.5: what docs/decisions.md relies on.

Leases and keep-alive, prefix watches that start with the existing keys, and what happens when
etcd restarts with its data or comes back empty.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from dynamo.runtime.config import RuntimeConfig
from dynamo.runtime.etcd import Etcd, WatchEvent
from dynamo.testing import EtcdServer, free_port, until

pytestmark = pytest.mark.integration


def etcd_for(url: str, ttl: int = 2) -> Etcd:
    return Etcd(RuntimeConfig(etcd_endpoints=(url,), nats_server="", lease_ttl=ttl))


class Recorder:
    """Runs a prefix watch in the background and keeps what it reported."""

    def __init__(self, etcd: Etcd, prefix: str):
        self.events: list[WatchEvent] = []
        self.task = asyncio.create_task(self._run(etcd, prefix))

    async def _run(self, etcd: Etcd, prefix: str) -> None:
        async for event in etcd.watch_prefix(prefix):
            self.events.append(event)

    def seen(self) -> list[tuple[str, str]]:
        return [(e.kind, e.key) for e in self.events]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
def fresh_etcd():
    """An etcd of this test's own, which the test may stop, wipe and restart."""
    with EtcdServer() as server:
        yield server


async def test_keep_alive_holds_keys_past_the_ttl_and_revoke_deletes_them(etcd_server):
    owner, reader = etcd_for(etcd_server.url), etcd_for(etcd_server.url)
    await owner.connect()
    await reader.connect()
    await owner.put_leased("t-keepalive/a", b"1")
    await asyncio.sleep(4.5)  # more than twice the 2 s TTL
    assert await reader.get("t-keepalive/a") == b"1"
    await owner.close(revoke=True)
    assert await reader.get("t-keepalive/a") is None
    await reader.close()


async def test_keys_expire_when_the_owner_stops_refreshing(etcd_server):
    owner, reader = etcd_for(etcd_server.url), etcd_for(etcd_server.url)
    await owner.connect()
    await reader.connect()
    await owner.put_leased("t-expire/a", b"1")
    await owner.close(revoke=False)  # like a crash: no revoke, no more keep-alive

    async def gone() -> bool:
        return await reader.get("t-expire/a") is None

    await until(gone, what="expiry of the lease")
    await reader.close()


async def test_watch_reports_existing_keys_then_changes(etcd_server):
    etcd = etcd_for(etcd_server.url)
    await etcd.connect()
    await etcd.put_leased("t-watch/old", b"1")
    recorder = Recorder(etcd, "t-watch/")

    async def seen(n: int):
        async def check() -> bool:
            return len(recorder.events) >= n

        return check

    await until(await seen(1), what="the existing key")
    await etcd.put_leased("t-watch/new", b"2")
    await etcd.delete_owned("t-watch/old")
    await until(await seen(3), what="the put and the delete")
    assert recorder.seen() == [
        ("put", "t-watch/old"),
        ("put", "t-watch/new"),
        ("delete", "t-watch/old"),
    ]
    assert recorder.events[1].value == b"2"
    await recorder.stop()
    await etcd.close()


async def test_lease_and_watch_survive_an_etcd_restart(fresh_etcd):
    owner, watcher = etcd_for(fresh_etcd.url), etcd_for(fresh_etcd.url)
    await owner.connect()
    await watcher.connect()
    await owner.put_leased("t-restart/a", b"1")
    lease = owner.lease_id
    recorder = Recorder(watcher, "t-restart/")
    await until(lambda: recorder.events, what="the first event")
    fresh_etcd.restart(down_for=3)  # longer than the TTL, but etcd keeps leases across a restart
    await owner.put_leased("t-restart/b", b"2")

    async def saw_b() -> bool:
        return ("put", "t-restart/b") in recorder.seen()

    await until(saw_b, what="a watch event after the restart")
    await asyncio.sleep(4.5)  # the keeper refreshed the same lease through and after the outage
    assert owner.lease_id == lease
    assert await watcher.get("t-restart/a") == b"1"
    assert ("delete", "t-restart/a") not in recorder.seen()
    await recorder.stop()
    await owner.close()
    await watcher.close()


async def test_lease_and_keys_come_back_when_etcd_returns_empty(fresh_etcd, caplog):
    caplog.set_level(logging.INFO, logger="dynamo.runtime.etcd")
    owner, watcher = etcd_for(fresh_etcd.url), etcd_for(fresh_etcd.url)
    await owner.connect()
    await watcher.connect()
    await owner.put_leased("t-wipe/a", b"1")
    await owner.put_leased("t-wipe/b", b"2", shared=True)
    lease = owner.lease_id
    recorder = Recorder(watcher, "t-wipe/")
    fresh_etcd.restart(wipe=True, down_for=1)

    async def back() -> bool:
        keys = await watcher.get_prefix("t-wipe/")
        return keys == {"t-wipe/a": b"1", "t-wipe/b": b"2"}

    await until(back, what="re-registration")
    assert owner.lease_id != lease
    assert any("new lease" in r.getMessage() for r in caplog.records)
    info = await watcher._client.get_lease_info(owner.lease_id)
    assert info.TTL > 0
    await recorder.stop()
    await owner.close()
    # Revoking the new lease takes the re-created keys with it.
    assert await watcher.get_prefix("t-wipe/") == {}
    await watcher.close()


async def test_shared_key_stays_while_one_owner_is_left(etcd_server):
    a, b, reader = (etcd_for(etcd_server.url) for _ in range(3))
    for etcd in (a, b, reader):
        await etcd.connect()
    await a.put_leased("t-shared/card", b"card", shared=True)
    await b.put_leased("t-shared/card", b"card", shared=True)
    await asyncio.sleep(0.2)  # both guards are watching
    await a.close(revoke=True)

    async def present() -> bool:
        return await reader.get("t-shared/card") == b"card"

    await until(present, within=5, what="the other owner putting the card back")
    await b.close(revoke=True)
    assert await reader.get("t-shared/card") is None
    await reader.close()


async def test_connect_waits_for_etcd_and_says_so_once(caplog):
    server = EtcdServer()
    server.port = free_port()
    etcd = etcd_for(server.url)
    connecting = asyncio.create_task(etcd.connect())
    await asyncio.sleep(2.5)  # several retries
    assert not connecting.done()
    await asyncio.to_thread(server.start)
    try:
        await asyncio.wait_for(connecting, 15)
        warnings = [r for r in caplog.records if "cannot reach etcd" in r.getMessage()]
        assert len(warnings) == 1
        assert server.url in warnings[0].getMessage()
    finally:
        await etcd.close()
        server.close()


async def test_closed_watches_are_cancelled_on_the_server_stream(etcd_server):
    etcd = etcd_for(etcd_server.url)
    await etcd.connect()
    recorders = [Recorder(etcd, f"t-cancel/{i}/") for i in range(5)]

    async def all_registered() -> bool:
        return len(etcd._client._watcher._callbacks) == 5

    await until(all_registered, what="five watches")
    for recorder in recorders:
        await recorder.stop()

    async def none_left() -> bool:
        return not etcd._client._watcher._callbacks

    await until(none_left, within=5, what="the watches' cancellation")
    await etcd.close()


async def test_connect_moves_on_to_the_next_endpoint(etcd_server):
    dead = f"http://127.0.0.1:{free_port()}"
    etcd = Etcd(RuntimeConfig(etcd_endpoints=(dead, etcd_server.url), nats_server=""))
    await asyncio.wait_for(etcd.connect(), 15)
    assert etcd.url == etcd_server.url
    await etcd.put_leased("t-failover/a", b"1")
    assert await etcd.get("t-failover/a") == b"1"
    await etcd.close()
