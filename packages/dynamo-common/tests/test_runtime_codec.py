"""The request plane's frames, handler signatures, settings and back-off: no servers needed."""

from __future__ import annotations

import functools

import orjson
import pytest

from dynamo.runtime import codec
from dynamo.runtime.backoff import Backoff
from dynamo.runtime.config import RuntimeConfig, host_port
from dynamo.runtime.request_plane import takes_context


def test_request_round_trip():
    payload = codec.encode_request("req-1", {"token_ids": [1, 2], "text": 'é\n"q"'})
    assert codec.decode_request(payload) == ("req-1", {"token_ids": [1, 2], "text": 'é\n"q"'})
    assert orjson.loads(payload) == {"id": "req-1", "data": {"token_ids": [1, 2], "text": 'é\n"q"'}}


def test_frames_are_numbered_and_typed():
    assert codec.decode_frame(codec.data_frame(1, {"token_ids": [7]})) == {
        "seq": 1,
        "data": {"token_ids": [7]},
    }
    assert codec.decode_frame(codec.heartbeat_frame(2)) == {"seq": 2, "hb": True}
    assert codec.decode_frame(codec.final_frame(3)) == {"seq": 3, "final": True}
    assert codec.decode_frame(codec.error_frame(4, "boom", 400)) == {
        "seq": 4,
        "error": "boom",
        "status": 400,
    }
    assert "status" not in codec.decode_frame(codec.error_frame(4, "boom"))
    assert orjson.loads(codec.control("req-1", "_INBOX.x", "stop")) == {
        "id": "req-1",
        "inbox": "_INBOX.x",
        "kind": "stop",
    }


def test_an_error_frame_carries_what_the_client_needs_to_raise_it_again():
    frame = codec.error_frame(
        2,
        "the prompt is too long",
        400,
        error_type="invalid_request_error",
        code="context_length_exceeded",
        param="messages",
    )
    assert codec.decode_frame(frame) == {
        "seq": 2,
        "error": "the prompt is too long",
        "status": 400,
        "type": "invalid_request_error",
        "code": "context_length_exceeded",
        "param": "messages",
    }
    assert codec.decode_frame(codec.error_frame(2, "x", code=429)) == {
        "seq": 2,
        "error": "x",
        "code": 429,
    }


def test_pydantic_responses_are_written_as_json():
    from dynamo.llm.protocols import LLMEngineOutput

    frame = codec.decode_frame(codec.data_frame(1, LLMEngineOutput(token_ids=[5])))
    assert frame["data"]["token_ids"] == [5]
    with pytest.raises(TypeError):
        codec.data_frame(1, object())


class Handler:
    async def with_context(self, request, context):
        yield request

    async def without_context(self, request):
        yield request


async def plain(request):
    yield request


async def plain_with_context(request, context):
    yield request


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        (Handler().with_context, True),
        (Handler().without_context, False),
        (plain, False),
        (plain_with_context, True),
        (functools.partial(plain_with_context), True),
    ],
)
def test_handler_signature_decides_whether_it_gets_the_context(handler, expected):
    assert takes_context(handler) is expected


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.delenv("ETCD_ENDPOINTS", raising=False)
    monkeypatch.delenv("NATS_SERVER", raising=False)
    config = RuntimeConfig.from_env()
    assert config.etcd_endpoints == ("http://localhost:2379",)
    assert config.nats_server == "nats://localhost:4222"
    assert config.lease_ttl == 10
    assert config.graceful_shutdown_timeout == 30.0  # upstream's default
    monkeypatch.setenv("DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT", "2.5")
    assert RuntimeConfig.from_env().graceful_shutdown_timeout == 2.5
    monkeypatch.setenv("ETCD_ENDPOINTS", "http://a:1, b:2")
    assert RuntimeConfig.from_env().etcd_endpoints == ("http://a:1", "b:2")
    assert host_port("http://a:1", 2379) == ("a", 1)
    assert host_port("b", 2379) == ("b", 2379)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ETCD_ENDPOINTS", "http://127.0.0.1:notaport"),
        ("ETCD_ENDPOINTS", "a:1,b:70000"),
        ("NATS_SERVER", "nats://h:x"),
        ("DYN_ETCD_LEASE_TTL", "abc"),
        ("DYN_ETCD_LEASE_TTL", "0"),
        ("DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT", "-1"),
        ("DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT", "soon"),
        ("DYN_WORKER_GRACEFUL_SHUTDOWN_TIMEOUT", "nan"),
    ],
)
def test_unusable_settings_name_themselves(monkeypatch, name, value):
    """Issue 18 item 12: these were tracebacks from deep inside the clients."""
    from dynamo.runtime.errors import RuntimeConfigError

    monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeConfigError, match=name):
        RuntimeConfig.from_env()


def test_backoff_doubles_to_its_cap_and_resets():
    backoff = Backoff(first=1.0, cap=4.0)
    delays = [backoff.delay() for _ in range(5)]
    for delay, nominal in zip(delays, [1, 2, 4, 4, 4], strict=True):
        assert 0.8 * nominal <= delay <= 1.2 * nominal
    backoff.reset()
    assert 0.8 <= backoff.delay() <= 1.2
