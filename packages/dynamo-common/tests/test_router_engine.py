"""`RouterEngine`: which worker a request names, and the runtime's errors as request errors."""

from __future__ import annotations

import pytest

from dynamo.llm.errors import InvalidRequestError, RequestTooLargeError, ServiceUnavailableError
from dynamo.llm.router_engine import RouterEngine, pinned_instance
from dynamo.runtime.context import Context
from dynamo.runtime.errors import NoInstancesError, PayloadTooLargeError, UnknownInstanceError


def test_the_pinned_instance_of_either_request_shape():
    assert pinned_instance({"token_ids": [1], "backend_instance_id": 7}) == 7
    # A Chat/Completion engine's request is the OpenAI body: the id is still under nvext.
    assert pinned_instance({"messages": [], "nvext": {"backend_instance_id": 9}}) == 9
    assert pinned_instance({"messages": [], "nvext": {}}) is None
    assert pinned_instance({"token_ids": [1]}) is None


class _FailingClient:
    """Stands in for a runtime Client whose stream fails as the real one does."""

    def __init__(self, error: Exception):
        self.error = error

    def stream(self, request, context, *, errors=None, **kw):
        """Fails as `Client.stream` does: with `errors`, raises what they map the error to."""

        async def fail():
            raise self.error if errors is None else errors(self.error)
            yield  # pragma: no cover

        return fail()


class _OwnStreams(RouterEngine):
    """Opens its streams its own way, as the KV router does, passing `errors` on."""

    def open_stream(self, request, context, errors=None):
        return self.client.stream(request, context, errors=errors)


@pytest.mark.parametrize(
    ("error", "expected", "status"),
    [
        (UnknownInstanceError("ns.c.e", 0x5EED), InvalidRequestError, 400),
        (NoInstancesError("ns.c.e"), ServiceUnavailableError, 503),
        (PayloadTooLargeError(2 << 20, 1 << 20), RequestTooLargeError, 413),
    ],
)
@pytest.mark.parametrize("engine_class", [RouterEngine, _OwnStreams])
async def test_runtime_errors_become_request_errors(error, expected, status, engine_class):
    engine = engine_class(_FailingClient(error))  # type: ignore[arg-type]
    with pytest.raises(expected) as raised:
        async for _ in engine.generate({"token_ids": [1]}, Context()):
            pass
    assert type(raised.value) is expected and raised.value.status_code == status


@pytest.mark.parametrize("engine_class", [RouterEngine, _OwnStreams])
async def test_other_errors_pass_through_unchanged(engine_class):
    error = ValueError("not the runtime's")
    engine = engine_class(_FailingClient(error))  # type: ignore[arg-type]
    with pytest.raises(ValueError) as raised:
        async for _ in engine.generate({"token_ids": [1]}, Context()):
            pass
    assert raised.value is error


def test_an_unknown_router_mode_is_refused():
    with pytest.raises(ValueError, match="unknown router mode 'kv'"):
        RouterEngine(_FailingClient(NoInstancesError("ns.c.e")), "kv")  # type: ignore[arg-type]
