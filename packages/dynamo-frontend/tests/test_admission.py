"""Admission control: the per-model limit, the FIFO queue, 429/503 with Retry-After, the request
deadline, the engines' published capacity and the metrics; in process over httpx.ASGITransport."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from dynamo.frontend.admission import AdmissionOptions, served_capacity
from dynamo.frontend.flags import UsageError, parse_command_line
from dynamo.frontend.http.app import AppState, build_app
from dynamo.llm import ModelType
from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.pipeline import OpenAIEngineModel
from dynamo.runtime.context import Context
from dynamo.testing import until


def chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


class HeldEngine:
    """A chat engine whose answers wait until the test lets them go (or forever, for timeouts),
    recording the order requests reached it and how they ended."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.arrived: list[str] = []
        self.running = 0
        self.peak = 0
        self.stopped: list[str] = []

    async def generate(self, request: dict[str, Any], context: Context) -> AsyncIterator[dict]:
        name = request["messages"][-1]["content"]
        self.arrived.append(name)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            while not self.go.is_set():
                if context.is_stopped():
                    self.stopped.append(name)
                    return
                await asyncio.sleep(0.01)
            yield chunk(name)
            yield chunk("", "stop")
        finally:
            self.running -= 1


def setup(options: AdmissionOptions, engine: Any = None, card: Any = None):
    engine = engine or HeldEngine()
    state = AppState(admission_options=options)
    state.models.add(OpenAIEngineModel("m", card, engine, frozenset({ModelType.Chat})))
    transport = httpx.ASGITransport(app=build_app(state))
    return engine, state, httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30)


def ask(client: httpx.AsyncClient, name: str, stream: bool = False):
    body = {"model": "m", "messages": [{"role": "user", "content": name}], "stream": stream}
    return client.post("/v1/chat/completions", json=body)


async def test_limit_queue_fifo_and_429():
    engine, state, client = setup(AdmissionOptions(max_concurrent=2, queue_size=2))
    async with client:
        first = [asyncio.create_task(ask(client, f"r{i}")) for i in range(2)]
        await until(lambda: len(engine.arrived) == 2)
        queued = []
        for i in range(2, 4):
            queued.append(asyncio.create_task(ask(client, f"r{i}")))
            await until(lambda n=i: state.admission.gates["m"].waiting == n - 1)
        # Two running, two waiting: the fifth is refused at once.
        refused = await ask(client, "r4")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "queue_full"
        metrics = (await client.get("/metrics")).text
        assert 'dynamo_frontend_queued_requests{model="m"} 2.0' in metrics
        assert 'rejected_requests_total{model="m",reason="queue_full"} 1.0' in metrics
        engine.go.set()
        answers = await asyncio.gather(*first, *queued)
        assert [r.status_code for r in answers] == [200] * 4
        assert engine.peak == 2
        assert engine.arrived[2:] == ["r2", "r3"]  # first come, first served
        metrics = (await client.get("/metrics")).text
        assert 'dynamo_frontend_queue_time_seconds_count{model="m"} 2.0' in metrics
        assert 'dynamo_frontend_queued_requests{model="m"} 0.0' in metrics
        assert state.admission.gates["m"].in_flight == 0


async def test_queue_timeout_is_503_with_retry_after():
    engine, state, client = setup(AdmissionOptions(max_concurrent=1, queue_timeout=0.2))
    async with client:
        running = asyncio.create_task(ask(client, "a"))
        await until(lambda: engine.arrived == ["a"])
        started = asyncio.get_running_loop().time()
        r = await ask(client, "b")
        waited = asyncio.get_running_loop().time() - started
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "queue_timeout"
        assert 0.2 <= waited < 2.0
        assert "b" not in engine.arrived
        engine.go.set()
        assert (await running).status_code == 200
        assert state.admission.gates["m"].in_flight == 0
        assert state.admission.gates["m"].waiting == 0


async def test_request_timeout_stops_the_engine():
    engine, _, client = setup(AdmissionOptions(request_timeout=0.3))
    async with client:
        r = await ask(client, "slow")
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "request_timeout"
        await until(lambda: engine.running == 0)
        metrics = (await client.get("/metrics")).text
        assert 'rejected_requests_total{model="m",reason="request_timeout"} 1.0' in metrics


class TrickleEngine:
    """Streams a token every 50 ms, forever unless stopped."""

    def __init__(self) -> None:
        self.saw_stop = asyncio.Event()

    async def generate(self, request: dict[str, Any], context: Context) -> AsyncIterator[dict]:
        while not context.is_stopped():
            yield chunk("x")
            await asyncio.sleep(0.05)
        self.saw_stop.set()


async def test_request_timeout_mid_stream_ends_with_an_error_event():
    engine = TrickleEngine()
    _, _, client = setup(AdmissionOptions(request_timeout=0.3), engine)
    async with client:
        r = await ask(client, "s", stream=True)
        assert r.status_code == 200
        events = r.text.split("\n\n")
        assert any(e.startswith("event: error") and "request_timeout" in e for e in events)
        assert events[0].startswith("data: ")  # tokens came before the deadline


async def test_client_leaving_the_queue_gives_back_its_place():
    engine, state, client = setup(AdmissionOptions(max_concurrent=1))
    gate = None
    async with client:
        running = asyncio.create_task(ask(client, "a"))
        await until(lambda: engine.arrived == ["a"])
        leaving = asyncio.create_task(ask(client, "b"))
        gate = state.admission.gates["m"]
        await until(lambda: gate.waiting == 1)
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert gate.waiting == 0
        engine.go.set()
        assert (await running).status_code == 200
        assert (await ask(client, "c")).status_code == 200
        assert engine.arrived == ["a", "c"] and gate.in_flight == 0


async def test_engine_capacity_is_the_default_limit():
    card = ModelDeploymentCard("m", runtime_config={"max_num_seqs": 1})
    engine, _, client = setup(AdmissionOptions(queue_size=0), card=card)
    async with client:
        running = asyncio.create_task(ask(client, "a"))
        await until(lambda: engine.arrived == ["a"])
        assert (await ask(client, "b")).status_code == 429
        engine.go.set()
        assert (await running).status_code == 200


def test_served_capacity():
    def model(runtime_config, engine=None):
        return SimpleNamespace(card=SimpleNamespace(runtime_config=runtime_config), engine=engine)

    assert served_capacity(model({})) is None
    assert served_capacity(model({"max_num_seqs": 4})) == 4
    client = SimpleNamespace(instance_ids=lambda: [1, 2, 3])
    routed = SimpleNamespace(engine=SimpleNamespace(client=client))  # e.g. Migration(router)
    assert served_capacity(model({"max_num_seqs": 4}, routed)) == 12
    assert served_capacity(SimpleNamespace(card=None)) is None


def admission(*argv: str) -> AdmissionOptions:
    return AdmissionOptions.from_args(parse_command_line(["in=http", "out=echo_full", *argv]))


def test_flags():
    assert admission() == AdmissionOptions()
    o = admission(
        "--max-concurrent-requests",
        "8",
        "--queue-size",
        "0",
        "--queue-timeout",
        "2.5",
        "--request-timeout",
        "60",
    )
    assert o == AdmissionOptions(8, 0, 2.5, 60.0)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--max-concurrent-requests", "0"], "at least 1"),
        (["--queue-size", "-1"], "at least 0"),
        (["--queue-timeout", "0"], "above 0"),
        (["--request-timeout", "inf"], "above 0"),
    ],
)
def test_bad_flags(argv, needle):
    with pytest.raises(UsageError, match=needle):
        parse_command_line(["in=http", "out=echo_full", *argv])
    with pytest.raises(UsageError, match="needs in=http"):
        parse_command_line(["in=text", "out=echo_full", *argv])


class PacedEngine:
    """Answers each request after 50 ms."""

    async def generate(self, request: dict[str, Any], context: Context) -> AsyncIterator[dict]:
        await asyncio.sleep(0.05)
        yield chunk("ok")
        yield chunk("", "stop")


async def test_ten_times_capacity_gets_only_200_429_503_with_retry_after():
    """The overload drill in small: 10 x (limit + queue) at once."""
    options = AdmissionOptions(max_concurrent=2, queue_size=2, queue_timeout=0.12)
    _, state, client = setup(options, PacedEngine())
    async with client:
        answers = await asyncio.gather(*(ask(client, f"r{i}") for i in range(40)))
    statuses = Counter(r.status_code for r in answers)
    assert set(statuses) <= {200, 429, 503}, statuses
    assert statuses[200] >= 4 and statuses[429] > 0
    assert all("retry-after" in r.headers for r in answers if r.status_code != 200)
    gate = state.admission.gates["m"]
    assert gate.in_flight == 0 and gate.waiting == 0


@pytest.mark.slow
def test_llamacpp_capacity_is_the_limit(start_server, smollm2_gguf):
    """With the real llama.cpp engine: its slots (published as max_num_seqs) are the default
    limit, so with no queue the requests beyond them are refused at once."""
    pytest.importorskip("llama_cpp")
    server = start_server(
        "out=llamacpp",
        str(smollm2_gguf),
        "--model-name",
        "smol",
        "--extra-engine-args",
        '{"n_parallel": 2}',
        "--queue-size",
        "0",
    )
    body = {"model": "smol", "max_tokens": 40, "messages": [{"role": "user", "content": "Hi"}]}

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=120) as c:
            answers = await asyncio.gather(
                *(c.post(f"{server.v1}/chat/completions", json=body) for _ in range(8))
            )
        return sorted(r.status_code for r in answers)

    assert asyncio.run(burst()) == [200, 200, 429, 429, 429, 429, 429, 429]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'rejected_requests_total{model="smol",reason="queue_full"} 6.0' in metrics
