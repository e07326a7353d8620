"""Errors in Anthropic's shape: `{"type": "error", "error": {"type": ..., "message": ...}}`.

The status comes from the one exception mapper every endpoint uses (`http.errors.to_error`); only
the body differs, with Anthropic's error type for that status.
"""

from __future__ import annotations

from typing import Any

import orjson

from dynamo.frontend.http.errors import to_error

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def anthropic_body(status: int, message: str) -> dict[str, Any]:
    kind = _TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def anthropic_error(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """(HTTP status, Anthropic error body) for any exception."""
    status, body = to_error(exc)
    return status, anthropic_body(status, body["error"]["message"])


def sse_anthropic_error(exc: BaseException) -> bytes:
    """An error inside a stream, as Anthropic sends it: an `error` event."""
    _, body = anthropic_error(exc)
    return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"
