"""The TCP request plane: its framing (no servers), and what only it does over real sockets (the
behaviour both planes share is tested over each in test_runtime_routing, test_worker_loss and
test_runtime_failures)."""

from __future__ import annotations

import asyncio
import socket

import orjson
import pytest

from dynamo.runtime import RuntimeConfig, codec
from dynamo.runtime.errors import PayloadTooLargeError, RuntimeConfigError
from dynamo.runtime.schema import InstanceRecord
from dynamo.runtime.tcp_plane import TcpRequestServer, _CallerConnection, split_address
from dynamo.testing import endless_counter, serve, tcp_plane


def test_messages_are_cut_from_any_split_of_the_byte_stream():
    wire = b"".join(
        codec.tcp_message(i, codec.KIND_FRAME, codec.data_frame(i, {"t": "x" * i}))
        for i in range(1, 40)
    )
    for step in (1, 7, 9, 100, len(wire)):
        reader = codec.TcpMessageReader(1 << 20)
        got = []
        for start in range(0, len(wire), step):
            got += reader.feed(wire[start : start + step])
        assert [m[0] for m in got] == list(range(1, 40))
        assert {m[1] for m in got} == {codec.KIND_FRAME}
        assert codec.decode_frame(got[-1][2]) == {"seq": 39, "data": {"t": "x" * 39}}


def test_an_oversized_message_is_refused_before_it_is_read():
    reader = codec.TcpMessageReader(100)
    with pytest.raises(codec.TcpMessageTooLargeError, match="101-byte message"):
        reader.feed(codec.TCP_HEADER.pack(101, 1, codec.KIND_REQUEST))


def test_request_payload_names_the_endpoint():
    payload = codec.tcp_request("ns_comp.ep-1f", "req", {"a": "b\nc"})
    subject, body = codec.parse_tcp_request(payload)
    assert subject == "ns_comp.ep-1f"
    assert codec.decode_request(body) == ("req", {"a": "b\nc"})


def test_addresses_and_records():
    assert split_address("10.0.0.7:4711/ns_c.ep-ff") == ("10.0.0.7", 4711, "ns_c.ep-ff")
    assert split_address("[::1]:80/s") == ("::1", 80, "s")
    record = InstanceRecord("ns", "c", "ep", 255, "10.0.0.7:4711/ns_c.ep-ff", "tcp")
    assert orjson.loads(record.dump())["transport"] == {"tcp": "10.0.0.7:4711/ns_c.ep-ff"}
    assert InstanceRecord.parse(record.dump()) == record
    http = orjson.loads(record.dump()) | {"transport": {"http": "x"}}
    with pytest.raises(ValueError, match="http"):
        InstanceRecord.parse(orjson.dumps(http))


def test_an_unknown_request_plane_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("DYN_REQUEST_PLANE", "carrier-pigeon")
    with pytest.raises(RuntimeConfigError, match="DYN_REQUEST_PLANE='carrier-pigeon'"):
        RuntimeConfig.from_env()
    monkeypatch.setenv("DYN_REQUEST_PLANE", "TCP")
    monkeypatch.setenv("DYN_TCP_RPC_PORT", "-3")
    with pytest.raises(RuntimeConfigError, match="DYN_TCP_RPC_PORT"):
        RuntimeConfig.from_env()


class _Transport:
    """What `_CallerConnection` writes, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False


async def test_a_request_goes_out_at_once_and_stops_wait_for_the_end_of_the_turn():
    connection = _CallerConnection(1 << 20)
    transport = _Transport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    request = codec.tcp_message(1, codec.KIND_REQUEST, b"request")
    stop = codec.tcp_message(2, codec.KIND_CONTROL, b"stop")
    connection.send(2, codec.KIND_CONTROL, b"stop")
    connection.send(3, codec.KIND_CONTROL, b"stop")
    assert transport.writes == []  # queued
    connection.send(1, codec.KIND_REQUEST, b"request")
    # Written before the loop turns, after the stops queued before it, in one write.
    assert transport.writes == [stop + codec.tcp_message(3, codec.KIND_CONTROL, b"stop") + request]
    connection.send(2, codec.KIND_CONTROL, b"stop")
    assert len(transport.writes) == 1
    await asyncio.sleep(0)
    assert transport.writes[1:] == [stop]  # nothing written twice


@pytest.mark.integration
@tcp_plane
async def test_the_record_names_the_tcp_address_and_frames_go_out_together(runtime, wait_client):
    async def handler(request):
        for i in range(request["n"]):
            yield i  # no await between items: all ready in one turn of the loop

    endpoint, serving = serve(runtime, "tcp_batch", handler)
    client = await wait_client(runtime, "tcp_batch", 1)
    record = InstanceRecord.parse(
        next(iter((await runtime.etcd.get_prefix(endpoint.prefix)).values()))
    )
    assert record.transport == "tcp"
    host, port, subject = split_address(record.address)
    server = await runtime.tcp_server()
    assert (host, port, subject) == (server.host, server.port, endpoint.subject(record.instance_id))
    writes = []
    [connection] = server.connections or [None]
    if connection is None:  # connected on the first request
        assert [i async for i in client.round_robin({"n": 1})] == [0]
        [connection] = server.connections
    write = connection.transport.write
    connection.transport.write = lambda data: (writes.append(data), write(data))[1]
    assert [i async for i in client.round_robin({"n": 300})] == list(range(300))
    # 302 frames (ack, items, final) in far fewer writes.
    assert 1 <= len(writes) < 30, len(writes)
    runtime.shutdown()
    await serving


@pytest.mark.integration
@tcp_plane
async def test_the_worker_stops_when_its_callers_connection_closes(runtime, wait_client):
    cancelled = asyncio.Event()
    endpoint, serving = serve(runtime, "tcp_vanished", endless_counter(cancelled))
    await wait_client(runtime, "tcp_vanished", 1)
    server = await runtime.tcp_server()
    # A caller that sends a request and dies: its socket closes without a stop message.
    raw = await asyncio.to_thread(socket.create_connection, (server.host, server.port))
    subject = endpoint.subject(endpoint.lease_id())
    raw.sendall(codec.tcp_message(1, codec.KIND_REQUEST, codec.tcp_request(subject, "r", {})))
    first = await asyncio.to_thread(raw.recv, 64)
    assert first  # the ack came
    raw.close()
    await asyncio.wait_for(cancelled.wait(), 5)
    runtime.shutdown()
    await serving


@pytest.mark.integration
async def test_one_client_reaches_workers_on_either_plane(workers, runtime, wait_client, gather):
    """Each worker is reached by the plane its record names, whatever the caller's own."""
    _, nats_id = workers.start(DYN_REQUEST_PLANE="nats")
    _, tcp_id = workers.start(DYN_REQUEST_PLANE="tcp")
    client = await wait_client(runtime, workers.namespace, 2)
    for instance in (nats_id, tcp_id):
        items = await gather(client.direct({"n": 3}, instance))
        assert [(i["instance"], i["i"]) for i in items] == [
            (instance, 0),
            (instance, 1),
            (instance, 2),
        ]


@pytest.mark.integration
@tcp_plane
async def test_a_request_over_the_message_limit_is_refused_before_it_is_sent(
    runtime, wait_client, gather
):
    async def handler(request):
        yield len(request["text"])

    _, serving = serve(runtime, "tcp_limit", handler)
    client = await wait_client(runtime, "tcp_limit", 1)
    runtime.tcp_client.max_message = 1000
    assert await gather(client.round_robin({"text": "x" * 500})) == [500]
    with pytest.raises(PayloadTooLargeError, match="at most 1000 bytes"):
        await gather(client.round_robin({"text": "x" * 2000}))
    runtime.shutdown()
    await serving


async def test_a_server_on_port_zero_gets_a_free_port_and_says_where():
    server = TcpRequestServer("127.0.0.1", 0)
    await server.start()
    try:
        assert server.port > 0
        assert server.address == f"127.0.0.1:{server.port}"
    finally:
        await server.close()


def test_both_sides_run_on_uvloop():
    """dynamo-run runs on uvloop, whose transports are not asyncio's classes."""
    uvloop = pytest.importorskip("uvloop")
    from dynamo.runtime.context import Context
    from dynamo.runtime.tcp_plane import TcpClient

    async def handler(request):
        for i in range(request["n"]):
            yield i

    async def main() -> list:
        server = TcpRequestServer("127.0.0.1")
        await server.start()
        endpoint = server.endpoint("ns_c.ep-1", handler)
        await endpoint.start()
        client = TcpClient()
        try:
            return [i async for i in client.stream(endpoint.address, 1, {"n": 5}, Context())]
        finally:
            await client.close()
            await endpoint.drain()
            await server.close()

    assert uvloop.run(main()) == [0, 1, 2, 3, 4]


@pytest.mark.integration
@tcp_plane
async def test_serving_over_tcp_goes_on_while_nats_is_down(
    own_servers, own_runtime, workers, wait_client, gather
):
    _, nats = own_servers
    workers.start()
    client = await wait_client(own_runtime, workers.namespace, 1)
    nats.stop()
    for _ in range(3):
        assert len(await gather(client.round_robin({"n": 4}))) == 4
