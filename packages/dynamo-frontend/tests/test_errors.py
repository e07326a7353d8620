"""`http.errors.to_error`: the one exception → (status, OpenAI error body) mapper."""

from __future__ import annotations

import orjson
import pytest
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from dynamo.frontend.http.errors import error_headers, sse_error, to_error
from dynamo.llm.errors import (
    ClientDisconnectedError,
    ContextLengthExceededError,
    ModelNotFoundError,
    ServiceUnavailableError,
    WorkerLostError,
)


class Body(BaseModel):
    max_tokens: int


def body(message, error_type, param=None, code=None):
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


@pytest.mark.parametrize(
    ("exc", "status", "expected"),
    [
        (
            ContextLengthExceededError("too long"),
            400,
            body("too long", "invalid_request_error", "messages", "context_length_exceeded"),
        ),
        (
            ModelNotFoundError("nope"),
            404,
            body("The model 'nope' does not exist", "not_found_error", "model", "model_not_found"),
        ),
        (ServiceUnavailableError("no workers"), 503, body("no workers", "service_unavailable")),
        (WorkerLostError("worker 1 died"), 502, body("worker 1 died", "engine_error")),
        (ClientDisconnectedError(), 499, body("client disconnected", "client_closed")),
        (HTTPException(404, "Not Found"), 404, body("Not Found", "not_found_error", code=404)),
        (
            HTTPException(405, "Method Not Allowed"),
            405,
            body("Method Not Allowed", "invalid_request_error", code=405),
        ),
        (
            RuntimeError("secret detail"),
            500,
            body("internal server error", "internal_error", code=500),
        ),
    ],
)
def test_each_kind_of_error_maps_to_its_status_and_body(exc, status, expected):
    assert to_error(exc) == (status, expected)


def test_error_headers():
    # The router's own headers pass through: a 405 says which methods the route takes.
    assert error_headers(HTTPException(405, headers={"Allow": "GET"})) == {"Allow": "GET"}
    assert error_headers(ServiceUnavailableError("busy", retry_after=1.5)) == {"Retry-After": "2"}
    assert error_headers(RuntimeError("x")) == {}


def test_a_validation_error_names_the_field():
    with pytest.raises(ValidationError) as info:
        Body.model_validate({"max_tokens": "many"})
    status, got = to_error(info.value)
    assert status == 400
    assert got["error"]["param"] == "max_tokens"
    assert got["error"]["type"] == "invalid_request_error"


def test_an_error_inside_a_stream_is_an_sse_error_event():
    event = sse_error(ContextLengthExceededError("too long"))
    assert event.startswith(b"event: error\ndata: ") and event.endswith(b"\n\n")
    data = orjson.loads(event.removeprefix(b"event: error\ndata: "))
    assert data["error"]["code"] == "context_length_exceeded"
