"""Run the HTTP app with uvicorn; on SIGINT/SIGTERM stop accepting, finish streams, exit 0."""

from __future__ import annotations

import logging
from types import FrameType

import uvicorn

from dynamo.frontend.http.app import AppState, build_app

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server, flagging the app as shutting down (so `/live` says 503) on a signal."""

    def __init__(self, config: uvicorn.Config, state: AppState):
        super().__init__(config)
        self._state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self._state.shutting_down:
            log.info("shutting down: no new connections; finishing in-flight requests")
        self._state.shutting_down = True
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal once it has shut down, which would make the process die
        # "killed by SIGTERM"; a graceful stop is a clean exit, code 0.
        self._captured_signals.clear()


async def serve_http(
    state: AppState, host: str, port: int, graceful_timeout: float | None = None
) -> None:
    """Serve until a signal arrives and in-flight requests are done."""
    config = uvicorn.Config(
        build_app(state),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        http="httptools",
        timeout_graceful_shutdown=graceful_timeout,
        lifespan="off",
        ssl_certfile=state.options.tls_cert_path,
        ssl_keyfile=state.options.tls_key_path,
    )
    server = _Server(config, state)
    log.info(
        "OpenAI-compatible HTTP server on %s://%s:%d (models: %s)",
        state.options.scheme,
        host,
        port,
        ", ".join(state.models.names()) or "none yet",
    )
    await server.serve()
