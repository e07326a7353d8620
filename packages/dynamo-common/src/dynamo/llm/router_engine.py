"""`RouterEngine`: a runtime `Client` as the pipeline's engine (`out=dyn`, the frontend's models).

It lives in the LLM layer, beside `Migration`, because it turns the runtime's network errors into
the pipeline's request errors; the runtime below knows nothing of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from dynamo.llm.errors import (
    EngineFailedError,
    InvalidRequestError,
    RequestError,
    RequestTooLargeError,
    ServiceUnavailableError,
    WorkerLostError,
)
from dynamo.runtime.client import Client
from dynamo.runtime.context import Context
from dynamo.runtime.errors import (
    InstanceGoneError,
    NoInstancesError,
    PayloadTooLargeError,
    RemoteError,
    RequestPlaneDownError,
    UnknownInstanceError,
)

#: The modes a plain `RouterEngine` routes by (the client's own choice; `kv` is `KvRouterEngine`).
ROUTER_MODES = ("round-robin", "random", "least-loaded", "power-of-two")

#: Seconds a client is told to wait (`Retry-After`) while NATS is unreachable: about the time the
#: NATS client takes to reconnect once the server is back.
REQUEST_PLANE_RETRY_AFTER = 2


class RouterEngine:
    """An engine over a client: what the frontend pipeline calls for `out=dyn`.

    Network failures become the pipeline's request errors here, so the HTTP layer maps them
    like any other: no workers is a 503, a worker that died is a 502, a `backend_instance_id`
    naming no worker of the model is a 400, a request too big for NATS is a 413, and a
    worker's own 4xx passes through.
    """

    def __init__(self, client: Client, mode: str = "round-robin"):
        if mode not in ROUTER_MODES:
            raise ValueError(f"unknown router mode {mode!r} (one of {', '.join(ROUTER_MODES)})")
        self.client = client
        self.mode = mode

    def open_stream(
        self,
        request: dict[str, Any],
        context: Context,
        errors: Callable[[Exception], Exception] | None = None,
    ) -> AsyncIterator[Any]:
        """The worker's response stream: to `nvext.backend_instance_id` if the request names one,
        else to the instance the router mode picks. Subclasses choose instances differently,
        and pass `errors` on to the client's stream (`Client.stream(errors=...)`)."""
        target = pinned_instance(request)
        if target is not None:
            return self.client.stream(request, context, instance_id=target, errors=errors)
        return self.client.stream(request, context, mode=self.mode, errors=errors)

    def generate(self, request: dict[str, Any], context: Context) -> AsyncIterator[Any]:
        """The worker's responses, with network failures as the pipeline's request errors.

        The client's stream translates them itself (`translate_error`): every token passes
        through each generator between the request plane and the HTTP writer, and one here
        would only forward them."""
        return self.open_stream(request, context, translate_error)


def translate_error(e: Exception) -> Exception:
    """The pipeline's request error for a runtime error (`e` itself for any other): no workers
    is a 503, a worker that died a 502, a `backend_instance_id` naming no worker of the model a
    400, a request too big for the request plane a 413, and a worker's own 4xx passes through."""
    if isinstance(e, UnknownInstanceError):
        return InvalidRequestError(
            f"nvext.backend_instance_id: {e}", param="nvext.backend_instance_id"
        )
    if isinstance(e, NoInstancesError):
        return ServiceUnavailableError(str(e))
    if isinstance(e, RequestPlaneDownError):
        return ServiceUnavailableError(
            str(e), code="request_plane_unavailable", retry_after=REQUEST_PLANE_RETRY_AFTER
        )
    if isinstance(e, PayloadTooLargeError):
        return RequestTooLargeError(str(e))
    if isinstance(e, InstanceGoneError):
        return WorkerLostError(str(e))
    if isinstance(e, RemoteError):
        if e.status is not None and 400 <= e.status < 500:
            return _request_error(e)
        if e.status == 503:  # the worker stopped (shut down without finishing the stream)
            return WorkerLostError(e.message)
        return EngineFailedError(e.message)
    return e


def pinned_instance(request: dict[str, Any]) -> int | None:
    """The worker a request names: `backend_instance_id` of a preprocessed request, or
    `nvext.backend_instance_id` of an OpenAI request passed whole to a Chat/Completion engine."""
    target = request.get("backend_instance_id")
    if target is None:
        nvext = request.get("nvext")
        target = nvext.get("backend_instance_id") if isinstance(nvext, dict) else None
    return None if target is None else int(target)


def _request_error(e: RemoteError) -> RequestError:
    """The worker's request error as the worker raised it: status, type, code and param kept, so
    a worker's `context_length_exceeded` reaches the client as exactly that."""
    error = RequestError(e.message, param=e.param, code=e.code)
    error.status_code = e.status or 400
    if e.error_type is not None:
        error.error_type = e.error_type
    return error


__all__ = ["ROUTER_MODES", "RouterEngine", "pinned_instance", "translate_error"]
