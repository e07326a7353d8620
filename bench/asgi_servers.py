"""The ASGI server's share of an SSE stream: uvicorn (httptools, uvloop) against granian and
hypercorn, in one run, rounds alternating so that the machine's load hits each alike.

The app is the frontend's SSE path without the engine and the pipeline: each `POST` answers
with `SSEResponse` (the frontend's own, events straight to the server's `send`) streaming
`--max-tokens` chat chunks built by `ResponseBuilder.sse` (the frontend's per-token encoding),
one per loop turn as an engine's deltas arrive. So what differs between the rows is the server:
HTTP parsing, the ASGI `send` per event, the socket writes. Each server runs in a process of its
own, one worker, on uvloop where it supports it; its CPU (all its threads) is divided by the
events it streamed. The load generator is bench/frontend.py's.

    uv run --with granian --with hypercorn python bench/asgi_servers.py --rounds 3

A server that is not installed is left out (with a line saying so).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from _common import http_get, process_tree_cpu_seconds, stop, wait_until
from frontend import run_load

from dynamo.testing.servers import free_port

SERVERS = ("uvicorn", "granian", "hypercorn")


def make_app(tokens: int) -> Any:
    """A bare ASGI app: `GET /health`, and any `POST` streams `tokens` chat chunks."""
    from dynamo.frontend.http.sse import SSEResponse, capture_raw_send
    from dynamo.llm.chunks import ResponseBuilder
    from dynamo.llm.stream_delta import StreamDelta

    async def events() -> AsyncIterator[bytes]:
        builder = ResponseBuilder("chat", "bench", "bench")
        for i in range(1, tokens + 1):
            await asyncio.sleep(0)  # one event per loop turn, as deltas come from an engine
            finish = "length" if i == tokens else None
            yield builder.sse(StreamDelta(" word", finish, 8, i))
        yield b"data: [DONE]\n\n"

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] == "GET":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        while (await receive()).get("more_body"):
            pass
        capture_raw_send(scope, send)
        await SSEResponse(events())(scope, receive, send)

    return app


def granian_app() -> Any:
    """The app for granian's worker process (granian takes an import path, not an object)."""
    return make_app(int(os.environ["BENCH_SSE_TOKENS"]))


def serve(server: str, port: int, tokens: int) -> None:
    """Run `server` on `port` until killed (the child process)."""
    app = make_app(tokens)
    if server == "uvicorn":
        import uvicorn

        uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                http="httptools",
                loop="uvloop",
                log_config=None,
                access_log=False,
                lifespan="off",
            )
        ).run()
    elif server == "granian":
        from granian.constants import Interfaces, Loops
        from granian.server import Server

        os.environ["BENCH_SSE_TOKENS"] = str(tokens)
        Server(
            target="asgi_servers:granian_app",  # its worker process imports the app
            factory=True,
            address="127.0.0.1",
            port=port,
            interface=Interfaces.ASGI,
            workers=1,
            loop=Loops.uvloop,
            log_enabled=False,
        ).serve()
    elif server == "hypercorn":
        import uvloop
        from hypercorn.asyncio import serve as hypercorn_serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        config.errorlog = None
        uvloop.run(hypercorn_serve(app, config, mode="asgi"))
    else:
        raise SystemExit(f"unknown server {server}")


def measure(server: str, args: argparse.Namespace) -> dict:
    port = free_port()
    serve_args = ["--serve", server, "--port", str(port), "--max-tokens", str(args.max_tokens)]
    proc = subprocess.Popen(
        [sys.executable, __file__, *serve_args],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_get(f"{url}/health") is not None, [proc], server, 60)
        endpoint = f"{url}/v1/chat/completions"
        asyncio.run(run_load(endpoint, "bench", 8, 8, args.max_tokens, 60))
        cpu0 = process_tree_cpu_seconds(proc.pid)
        results, wall = asyncio.run(
            run_load(endpoint, "bench", args.concurrency, args.requests, args.max_tokens, 300)
        )
        cpu = process_tree_cpu_seconds(proc.pid) - cpu0
    finally:
        stop([proc], grace=10)
    report = {
        "server": server,
        "requests": results.requests,
        "errors": results.errors,
        "requests_per_s": round(results.requests / wall, 1),
        "events_per_s": round(results.tokens / wall),
        "server_cpu_us_per_event": round(cpu / max(1, results.tokens) * 1e6, 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(report), flush=True)
    return report


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--requests", type=int, default=512)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.max_tokens)
        return
    servers = []
    for name in args.servers.split(","):
        if importlib.util.find_spec(name) is None:
            print(json.dumps({"server": name, "skipped": "not installed"}))
        else:
            servers.append(name)
    runs: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        for server in servers:
            runs.setdefault(server, []).append(measure(server, args))
            time.sleep(0.5)
    for server, reports in runs.items():
        summary = {
            "server": server,
            "runs": len(reports),
            "median_requests_per_s": statistics.median(r["requests_per_s"] for r in reports),
            "median_server_cpu_us_per_event": statistics.median(
                r["server_cpu_us_per_event"] for r in reports
            ),
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
