"""The one place that maps an exception to an OpenAI-shaped error, for JSON bodies and SSE events.

Every error response goes through `to_error`: the pipeline's `RequestError`s (including 499,
`ClientDisconnectedError`), a body that fails validation, the router's own HTTP errors (an
unknown route is a 404 `not_found_error`, a wrong method a 405), and anything else (a 500).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.types import Send

from dynamo.llm.errors import RequestError

log = logging.getLogger(__name__)


def error_body(
    message: str, error_type: str, *, param: str | None = None, code: Any = None
) -> dict:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _param(errors: list[Any]) -> str | None:
    """The field the first error is about. A value that fits no member of a union (`"stop": 5`)
    gets one error per member, each located under the member's type (`stop.str`,
    `stop.list[str]`): the field is what their locations have in common."""
    if not errors:
        return None
    first = tuple(errors[0].get("loc", ()))
    siblings = [tuple(err.get("loc", ())) for err in errors if err.get("loc", ())[:1] == first[:1]]
    common = first
    for loc in siblings[1:]:
        n = 0
        while n < min(len(common), len(loc)) and common[n] == loc[n]:
            n += 1
        common = common[:n]
    return ".".join(str(x) for x in common if x != "body") or None


def validation_message(e: ValidationError) -> tuple[str, str | None]:
    """A one-line summary of a pydantic error, and the offending field (`param`)."""
    errors = e.errors()
    parts, param = [], _param(errors)
    for err in errors[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body",))
        msg = str(err.get("msg"))
        if err.get("type") == "extra_forbidden":
            # A field we do not read: refused, never silently dropped.
            msg = "unrecognized request field (not an OpenAI field or a supported extension)"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request", param


def to_error(exc: BaseException) -> tuple[int, dict]:
    """(HTTP status, OpenAI error body) for any exception. Unknown ones are our bugs: 500."""
    if isinstance(exc, RequestError):
        return exc.status_code, error_body(
            exc.message, exc.error_type, param=exc.param, code=exc.code
        )
    if isinstance(exc, ValidationError):
        msg, param = validation_message(exc)
        return 400, error_body(msg, "invalid_request_error", param=param)
    if isinstance(exc, HTTPException):  # the router's: no such route, method not allowed
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return exc.status_code, error_body(str(exc.detail), kind, code=exc.status_code)
    log.exception("internal error while handling a request", exc_info=exc)
    return 500, error_body("internal server error", "internal_error", code=500)


def error_headers(exc: BaseException) -> dict[str, str]:
    """Headers an error response carries: `Retry-After` (whole seconds) on overload, and the
    router's own (`Allow` on a 405, which RFC 9110 requires; found by the fuzz drill)."""
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return headers


async def send_error(
    send: Send, exc: BaseException, headers: Mapping[str, str] | None = None
) -> None:
    """Answer with the error straight over ASGI: for middleware, which runs outside the routes."""
    status, body = to_error(exc)
    payload = orjson.dumps(body)
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *(
            (k.lower().encode(), v.encode())
            for k, v in {**error_headers(exc), **(headers or {})}.items()
        ),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


def sse_error(exc: BaseException) -> bytes:
    """An error inside a stream: an `event: error` whose data the openai SDK raises as APIError."""
    _, body = to_error(exc)
    return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"
