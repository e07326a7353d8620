"""Requests through the runtime against real etcd and NATS: routing, streaming, errors, cancel."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from dynamo.runtime import DistributedRuntime, NoInstancesError, RemoteError
from dynamo.runtime.context import Context
from dynamo.testing import both_planes, endless_counter, nats_plane, serve, tcp_plane

pytestmark = pytest.mark.integration


@nats_plane
async def test_instance_is_registered_with_upstreams_key_and_value(runtime, wait_client):
    async def handler(request):
        yield request

    endpoint, serving = serve(runtime, "keys", handler)
    client = await wait_client(runtime, "keys", 1)
    lease = endpoint.lease_id()
    assert client.instance_ids() == [lease]
    stored = await runtime.etcd.get_prefix("instances/keys/backend/generate:")
    import orjson

    assert stored == {
        f"instances/keys/backend/generate:{lease:x}": orjson.dumps(
            {
                "component": "backend",
                "endpoint": "generate",
                "namespace": "keys",
                "instance_id": lease,
                "transport": {"nats_tcp": f"keys_backend.generate-{lease:x}"},
            }
        )
    }
    runtime.shutdown()
    await serving
    assert await runtime.etcd.get_prefix("instances/keys/") == {}


@both_planes
async def test_round_robin_spreads_evenly(workers, runtime, wait_client, gather):
    workers.start()
    workers.start()
    client = await wait_client(runtime, workers.namespace, 2)
    seen = [(await gather(client.round_robin({"n": 1})))[0]["instance"] for _ in range(6)]
    assert set(seen) == set(client.instance_ids())
    assert all(a != b for a, b in itertools.pairwise(seen))


async def test_random_and_direct(workers, runtime, wait_client, gather):
    workers.start()
    workers.start()
    client = await wait_client(runtime, workers.namespace, 2)
    seen = {(await gather(client.random({"n": 1})))[0]["instance"] for _ in range(30)}
    assert seen == set(client.instance_ids())
    target = client.instance_ids()[1]
    direct = [(await gather(client.direct({"n": 1}, target)))[0]["instance"] for _ in range(5)]
    assert direct == [target] * 5
    # upstream's spelling: await the call, then iterate
    stream = await client.generate({"n": 3})
    assert [item["i"] async for item in stream] == [0, 1, 2]


@pytest.mark.parametrize("mode", ["least-loaded", "power-of-two"])
async def test_load_aware_modes_avoid_the_instance_still_streaming(
    mode, workers, runtime, wait_client
):
    """With two workers, one busy with a long stream, both load-aware modes send every short
    request to the other (power-of-two always draws both of two instances)."""
    workers.start()
    workers.start()
    client = await wait_client(runtime, workers.namespace, 2)
    long = client.stream({"n": 1000, "delay": 0.01}, Context(), mode=mode)
    busy_id = (await anext(long))["instance"]
    try:
        for _ in range(4):
            short = [item async for item in client.stream({"n": 1}, Context(), mode=mode)]
            assert short[0]["instance"] != busy_id
    finally:
        await long.aclose()  # type: ignore[attr-defined]


@both_planes
async def test_streams_in_order_and_ends_explicitly(workers, runtime, wait_client, gather):
    workers.start()
    client = await wait_client(runtime, workers.namespace, 1)
    items = await gather(client.round_robin({"n": 200}))
    assert [item["i"] for item in items] == list(range(200))


async def test_wait_for_instances(runtime):
    async def handler(request):
        yield 1

    endpoint = runtime.namespace("waiting").component("backend").endpoint("generate")
    client = await endpoint.client()
    assert client.instance_ids() == []
    waiting = asyncio.create_task(client.wait_for_instances())
    serving = asyncio.create_task(endpoint.serve_endpoint(handler))
    assert await asyncio.wait_for(waiting, 15) == [endpoint.lease_id()]
    runtime.shutdown()
    await serving


async def test_no_instances(runtime, gather):
    client = await runtime.endpoint("dyn://nobody-home.backend.generate").client()
    with pytest.raises(NoInstancesError):
        await gather(client.round_robin({}))
    with pytest.raises(NoInstancesError):
        await gather(client.direct({}, 0x1234))


@both_planes
async def test_cancellation_reaches_the_handler(runtime, wait_client):
    stopped = asyncio.Event()

    async def handler(request, context):
        for i in range(10_000):
            if context.is_stopped():
                stopped.set()
                return
            await asyncio.sleep(0.01)
            yield i

    _, serving = serve(runtime, "cancel", handler)
    client = await wait_client(runtime, "cancel", 1)

    # The caller stops reading.
    stream = client.round_robin({})
    assert await anext(stream) == 0
    await stream.aclose()
    await asyncio.wait_for(stopped.wait(), 5)

    # The caller's task is cancelled mid-stream.
    stopped.clear()

    async def consume() -> None:
        async for _ in client.round_robin({}):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.wait_for(stopped.wait(), 5)

    # The caller's context is stopped (a stop string found by the frontend, say).
    stopped.clear()
    context = Context()
    got = []
    async for item in client.round_robin({}, context):
        got.append(item)
        if len(got) == 3:
            context.stop_generating()
            stream_done = asyncio.create_task(stopped.wait())
    await asyncio.wait_for(stream_done, 5)
    runtime.shutdown()
    await serving


@both_planes
async def test_handler_errors_travel_as_errors(runtime, wait_client):
    class Rejected(Exception):
        status_code = 400

    async def handler(request):
        if request.get("reject"):
            raise Rejected("bad request")
        yield 1
        raise ValueError("the engine broke")

    _, serving = serve(runtime, "errors", handler)
    client = await wait_client(runtime, "errors", 1)
    got = []
    with pytest.raises(RemoteError, match="the engine broke") as failure:
        async for item in client.round_robin({}):
            got.append(item)
    assert got == [1]
    assert failure.value.status is None
    with pytest.raises(RemoteError, match="bad request") as failure:
        async for _ in client.round_robin({"reject": True}):
            pass
    assert failure.value.status == 400
    runtime.shutdown()
    await serving


async def test_a_request_error_keeps_its_type_code_and_param_across_the_network(
    runtime, wait_client
):
    from dynamo.llm.errors import ContextLengthExceededError, RequestError
    from dynamo.llm.router_engine import RouterEngine

    async def handler(request):
        raise ContextLengthExceededError("the prompt has 9000 tokens; the model takes 2048")
        yield  # an async generator, as handlers are

    _, serving = serve(runtime, "typed_errors", handler)
    client = await wait_client(runtime, "typed_errors", 1)
    with pytest.raises(RemoteError) as remote:
        async for _ in client.round_robin({}):
            pass
    assert remote.value.status == 400
    assert remote.value.error_type == "invalid_request_error"
    assert remote.value.code == "context_length_exceeded"
    assert remote.value.param == "messages"
    with pytest.raises(RequestError) as failure:
        async for _ in RouterEngine(client).generate({}, Context()):
            pass
    error = failure.value
    assert (error.status_code, error.error_type, error.code, error.param) == (
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "messages",
    )
    assert error.message == "the prompt has 9000 tokens; the model takes 2048"
    runtime.shutdown()
    await serving


@both_planes
async def test_two_clients_at_once(workers, runtime_env, wait_client, gather):
    workers.start()
    workers.start()
    a, b = DistributedRuntime(), DistributedRuntime()
    await a.ensure_connected()
    await b.ensure_connected()
    try:
        ca = await wait_client(a, workers.namespace, 2)
        cb = await wait_client(b, workers.namespace, 2)
        results = await asyncio.gather(
            *(gather(c.round_robin({"n": 20})) for c in (ca, cb) for _ in range(4))
        )
        assert all([item["i"] for item in r] == list(range(20)) for r in results)
        assert {r[0]["instance"] for r in results} == set(ca.instance_ids())
    finally:
        await a.close()
        await b.close()


async def test_instance_marked_down_is_tried_again_after_its_back_off(
    workers, runtime, wait_client, gather
):
    _, instance = workers.start()
    client = await wait_client(runtime, workers.namespace, 1)
    client.mark_down(instance)  # what a stream that went quiet does
    assert client.instance_ids() == []
    # The request waits for the back-off to end instead of failing with "no instances".
    assert (await gather(client.round_robin({"n": 1})))[0]["instance"] == instance


@both_planes
async def test_shutdown_without_grace_ends_streams_with_an_error(runtime, wait_client):
    async def handler(request):
        for i in range(10_000):
            await asyncio.sleep(0.01)
            yield i

    endpoint = runtime.namespace("nograce").component("backend").endpoint("generate")
    serving = asyncio.create_task(endpoint.serve_endpoint(handler, graceful_shutdown=False))
    client = await wait_client(runtime, "nograce", 1)
    stream = client.round_robin({})
    assert await anext(stream) == 0
    runtime.shutdown()
    with pytest.raises(RemoteError, match="the worker stopped") as failure:
        async for _ in stream:
            pass
    assert failure.value.status == 503
    await serving


@both_planes
async def test_requests_sharing_an_id_are_stopped_separately(runtime, wait_client, gather):
    stopped: list[str] = []

    async def handler(request, context):
        for i in range(request["n"]):
            if context.is_stopped():
                stopped.append(request["name"])
                return
            await asyncio.sleep(0.01)
            yield i

    _, serving = serve(runtime, "sameid", handler)
    client = await wait_client(runtime, "sameid", 1)
    first = client.round_robin({"n": 10_000, "name": "first"}, Context("same"))
    second = asyncio.create_task(
        gather(client.round_robin({"n": 50, "name": "second"}, Context("same")))
    )
    assert await anext(first) == 0
    await first.aclose()
    assert await asyncio.wait_for(second, 15) == list(range(50))
    assert stopped == ["first"]
    runtime.shutdown()
    await serving


@nats_plane
async def test_worker_stops_when_its_caller_vanished_without_a_word(runtime, wait_client):
    """A caller that dies (SIGKILL) sends no stop; the worker finds its inbox gone."""
    from dynamo.runtime import codec

    cancelled = asyncio.Event()
    endpoint, serving = serve(runtime, "vanished", endless_counter(cancelled))
    await wait_client(runtime, "vanished", 1)
    # A request whose reply inbox nobody listens on: what a dead caller leaves behind.
    subject = endpoint.subject(endpoint.lease_id())
    await runtime.nats.publish(subject, codec.encode_request("gone", {}), reply="_INBOX.nobody")
    await asyncio.wait_for(cancelled.wait(), 10)
    runtime.shutdown()
    await serving


async def test_client_close_runs_its_hooks_once_even_if_one_fails(runtime):
    client = await runtime.namespace("hooks").component("backend").endpoint("generate").client()
    calls: list[str] = []

    async def failing() -> None:
        calls.append("failing")
        raise RuntimeError("boom")

    async def ok() -> None:
        calls.append("ok")

    client.on_close += [failing, ok]
    await client.close()
    await client.close()
    assert calls == ["failing", "ok"]


@tcp_plane
async def test_a_stream_left_early_lets_go_of_its_worker_at_once(runtime, wait_client):
    """Closing a response stream closes the request plane's stream under it in the same call
    (the stop goes out, the stream's place on the connection and the in-flight count are
    released), not later when the garbage collector finds it."""

    async def handler(request):
        for i in range(10_000):
            await asyncio.sleep(0.01)
            yield i

    _, serving = serve(runtime, "leave", handler)
    client = await wait_client(runtime, "leave", 1)
    stream = client.stream({}, Context(), mode="least-loaded")
    assert await anext(stream) == 0
    (connection,) = runtime.tcp_client._connections.values()
    assert len(connection.streams) == 1
    held = stream  # the generator stays referenced: only aclose may release the stream
    await held.aclose()  # type: ignore[attr-defined]
    assert connection.streams == {}
    assert not client._busy
    runtime.shutdown()
    await serving
