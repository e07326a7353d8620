"""Run the HTTP app with uvicorn; on SIGINT/SIGTERM drain, finish streams, exit 0.

The drain keeps the listening socket open, so a load balancer's probes still get an answer:
`/live` and `/health` say 503 while the requests in flight finish, every other new request gets
a 503 "shutting down", and only then does uvicorn close the socket and the connections. (uvicorn
alone closes the socket at the first signal, so `/live` could never say it is shutting down.)
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from types import FrameType
from typing import Any

import orjson
import uvicorn

from dynamo.frontend.flags import UsageError
from dynamo.frontend.gc_freeze import tune_for_serving
from dynamo.frontend.http.app import AppState, build_app
from dynamo.frontend.http.errors import error_body
from dynamo.frontend.http.sse import capture_raw_send
from dynamo.frontend.http.warm_up import warm_up
from dynamo.frontend.http.workers import current_slot

log = logging.getLogger(__name__)

#: What still answers while draining: the probes, and the metrics of the drain itself.
_DRAIN_PATHS = frozenset({"/live", "/health", "/metrics"})
_DRAIN_POLL_SECONDS = 0.05


class _DrainGate:
    """The outermost ASGI layer: while the server drains, new requests but the probes get a
    503; otherwise it hands the server's own `send` to `SSEResponse` (through the scope), so
    that events skip the middleware's wrappers."""

    def __init__(self, app: Any, state: AppState):
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and self.state.shutting_down
            and scope.get("path") not in _DRAIN_PATHS
        ):
            body = orjson.dumps(
                error_body("the server is shutting down", "service_unavailable", code=503)
            )
            headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        capture_raw_send(scope, send)
        await self.app(scope, receive, send)


class _Server(uvicorn.Server):
    """uvicorn's server, flagging the app as shutting down (so `/live` says 503) on a signal and
    draining with its socket open."""

    def __init__(self, config: uvicorn.Config, state: AppState):
        super().__init__(config)
        self._state = state
        self.warm_up: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Listening: build what start-up deferred (`http.warm_up`), between requests.
        self.warm_up = asyncio.create_task(warm_up())

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self._state.shutting_down:
            log.info("shutting down: finishing in-flight requests; new ones get 503")
        self._state.shutting_down = True
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal once it has shut down, which would make the process die
        # "killed by SIGTERM"; a graceful stop is a clean exit, code 0.
        self._captured_signals.clear()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        timeout = self.config.timeout_graceful_shutdown
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.force_exit and self._state.metrics.inflight_total() > 0:
            if deadline is not None and time.monotonic() >= deadline:
                break
            await asyncio.sleep(_DRAIN_POLL_SECONDS)
        if deadline is not None:  # what is left of the graceful period, for uvicorn's own wait
            self.config.timeout_graceful_shutdown = max(0, math.ceil(deadline - time.monotonic()))
        await super().shutdown(sockets)


#: How long an idle client connection stays open. Longer than what clients and load balancers
#: keep an idle connection for (httpx and the OpenAI SDK: 5 s, aiohttp: 15 s, AWS ALB: 60 s):
#: with uvicorn's default of 5 s, a client reusing a connection just as the server closes it
#: gets "server disconnected" or a reset (the soak drill saw them), and a balancer a 502.
KEEP_ALIVE_SECONDS = 75


def listen(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """The listening socket, bound before uvicorn starts, so a busy port is one usage error
    (uvicorn logs it and exits 1 or 3) and port 0 logs the port it got. `reuse_port`: one of
    several `--http-workers` processes sharing the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock


async def serve_http(
    state: AppState, host: str, port: int, graceful_timeout: int | None = None
) -> None:
    """Serve until a signal arrives and in-flight requests are done."""
    config = uvicorn.Config(
        _DrainGate(build_app(state), state),
        log_config=None,
        access_log=False,
        http="httptools",
        # No WebSocket routes: "auto" would import the websockets library at every start.
        ws="none",
        timeout_graceful_shutdown=graceful_timeout,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        lifespan="off",
        ssl_certfile=state.options.tls_cert_path,
        ssl_keyfile=state.options.tls_key_path,
    )
    slot = current_slot()
    if slot is not None:
        port = slot.port
        state.metrics.mark_http_worker(slot.index, os.getpid())
    sock = listen(host, port, reuse_port=slot is not None)
    server = _Server(config, state)
    log.info(
        "OpenAI-compatible HTTP server on %s://%s:%d (models: %s)%s",
        state.options.scheme,
        host,
        sock.getsockname()[1],
        ", ".join(state.models.names()) or "none yet",
        f", HTTP process {slot.index} of {slot.count}, pid {os.getpid()}" if slot else "",
    )
    tune_for_serving()
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
