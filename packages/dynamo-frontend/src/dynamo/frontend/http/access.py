"""API keys: every route but the open ones needs `Authorization: Bearer <key>`.

Deny by default, as ASGI middleware in front of the whole app: a route someone adds later is
protected without doing anything. Only the probes (`/health`, `/live`) and, unless told
otherwise, `/metrics` stay open, so that load balancers and Prometheus need no key. Keys are
compared in constant time (their SHA-256 digests with `hmac.compare_digest`, against every key,
so neither the length nor which key matched shows in the timing).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from dynamo.frontend.http.errors import send_error
from dynamo.llm.errors import RequestError

#: Paths a load balancer or an orchestrator probes: never behind a key.
PROBE_PATHS = frozenset({"/health", "/live"})
METRICS_PATH = "/metrics"

_MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
_INCORRECT = "Incorrect API key provided."


class AuthenticationError(RequestError):
    """No API key, or not one of ours (401, as OpenAI answers it)."""

    status_code = 401

    def __init__(self, given: bool):
        super().__init__(
            _INCORRECT if given else _MISSING, code="invalid_api_key" if given else None
        )


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """The accepted keys, kept only as digests."""

    def __init__(self, keys: Iterable[str]):
        self._digests = [_digest(k) for k in keys]
        if not self._digests:
            raise ValueError("ApiKeys needs at least one key")

    def accepts(self, key: str) -> bool:
        given = _digest(key)
        found = False
        for digest in self._digests:  # no early exit: every key is compared
            found |= hmac.compare_digest(given, digest)
        return found


def _bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key a request carries: `Authorization: Bearer KEY`, or `x-api-key: KEY` (how the
    `anthropic` SDK sends it, for `/v1/messages`)."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    for name, value in headers:
        if name == b"x-api-key":
            return value.decode("latin-1").strip()
    return None


class ApiKeyMiddleware:
    """Answers 401 (OpenAI's shape) to a request without a valid key on a protected path."""

    def __init__(self, app: ASGIApp, keys: ApiKeys, protect_metrics: bool = False):
        self.app = app
        self.keys = keys
        self.open_paths = PROBE_PATHS if protect_metrics else PROBE_PATHS | {METRICS_PATH}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        token = _bearer(scope["headers"])
        if token and self.keys.accepts(token):
            await self.app(scope, receive, send)
            return
        await send_error(
            send, AuthenticationError(token is not None), {"WWW-Authenticate": "Bearer"}
        )
