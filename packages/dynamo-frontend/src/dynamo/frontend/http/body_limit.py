"""A limit on request bodies, enforced while the body arrives: 413 beyond it.

A `Content-Length` over the limit is refused before a byte of the body is read. A body without
one (chunked) is counted as it streams in, and the first chunk that crosses the limit ends the
request: the app gets an exception from `receive()` instead of more bytes, whatever it answers is
dropped, and the client gets the 413. So no request can make the server hold more than the limit.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dynamo.frontend.http.errors import send_error
from dynamo.llm.errors import RequestError


class BodyTooLarge(RequestError):
    """Raised from `receive()` when the body crosses the limit; the middleware answers 413 (and a
    route that maps it like any request error gets the same status)."""

    status_code = 413

    def __init__(self, max_bytes: int):
        super().__init__(
            f"the request body is larger than the server's limit of {max_bytes} bytes",
            code="request_too_large",
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        overflow = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, overflow
            if overflow:
                raise BodyTooLarge(self.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    overflow = True
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflow:
                return  # the app's answer to a body it never got whole: the 413 goes instead
            started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not overflow:
                raise
        if overflow and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        await send_error(send, BodyTooLarge(self.max_bytes), {"Connection": "close"})
