"""An ASGI app served by a real uvicorn inside the test's own event loop.

For tests that need real HTTP over a real socket (disconnects, streaming, the server's own `send`)
and still want to look at the objects behind the app (an engine's records, a middleware's
counts), which a server in a child process would hide. One copy here, so every such test starts
and stops its server the same way. (uvicorn comes with dynamo-frontend, a dependency.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from dynamo.testing.servers import free_port


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1:`port` (a free port when None) until the block ends; yields the
    base URL (`http://127.0.0.1:PORT`, no trailing slash).

    No lifespan (the tests build their app's state themselves) and no log config (uvicorn's own
    would replace the test's logging); leaving the block asks uvicorn to exit and waits for it,
    so open connections are closed before the next test starts."""
    port = free_port() if port is None else port
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
