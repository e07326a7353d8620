"""Start-up times (issue 14 item 5): how long until a new process is useful.

    http    `dynamo-run in=http out=echo_full`: from the process's start to its first 200 on
            GET /v1/models (wall time, and the CPU the process used by then: steadier on a
            shared machine), then how long its first chat completion takes (`first_chat_s`:
            whatever the server left to do at its first request shows there)
    dyn     `dynamo-run in=http out=dyn` (file discovery, TCP request plane): from the
            process's start to its first 200 on GET /v1/models (no worker yet: an empty list)
    worker  `dynamo-run in=dyn://… out=echo_full` next to a running `in=http out=dyn`: from the
            worker's start to its model on the frontend's /v1/models
    floor   a fresh interpreter importing only the libraries the HTTP server is built on
            (Starlette, uvicorn, pydantic with its first model, prometheus_client, uvloop): what
            no change of ours can go below (once per round, not per tree)

Each is measured `--rounds` times; with `--before DIR` (a tree of the repository's `packages`,
e.g. from `git archive`), each round measures that tree's sources too, alternating, so both
see the same load. The dyn frontend and the worker run with file discovery and the TCP request
plane, so no etcd or NATS is needed. One JSON line per measurement.

The children may write Python's bytecode cache (`PYTHONDONTWRITEBYTECODE` is dropped from their
environment), and one untimed start of each kind per tree comes first, so the timed starts find
it: an installed package has its bytecode (pip compiles it at install, and `uv run` writes it on
the first import), and a start without it measures the compiler instead (about twice the CPU).

    uv run python bench/startup.py --rounds 5
    git archive HEAD~3 packages | tar -x -C /tmp/before
    uv run python bench/startup.py --rounds 5 --before /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import process_cpu_seconds, stop

from dynamo.testing.servers import free_port

CLI = [sys.executable, "-m", "dynamo.frontend.cli"]


def _env(tree: str | None, extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, "DYN_LOG": "warn", **extra}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # see the module's doc
    if tree:
        sources = sorted(str(p) for p in Path(tree, "packages").glob("*/src"))
        env["PYTHONPATH"] = os.pathsep.join(sources)
    return env


#: One client for every poll: `httpx.get` builds a client, and with it a TLS context, per call
#: (~30 ms of CPU), so polling every 5 ms with it kept a whole core busy beside the process
#: being timed, on a two-core machine.
_client = httpx.Client(timeout=1)


def _models(url: str) -> list[str] | None:
    try:
        reply = _client.get(f"{url}/v1/models")
    except httpx.HTTPError:
        return None
    return [m["id"] for m in reply.json()["data"]] if reply.status_code == 200 else None


def _wait(check, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args} did not come up")
        time.sleep(0.005)


def _first_chat(url: str) -> float:
    """How long the server's first chat completion takes (a 200 expected)."""
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    model = _models(url)
    body["model"] = model[0] if model else body["model"]
    start = time.monotonic()
    reply = _client.post(f"{url}/v1/chat/completions", json=body)
    took = time.monotonic() - start
    if reply.status_code != 200:
        raise RuntimeError(f"first chat completion: {reply.status_code} {reply.text[:300]}")
    return took


def http_start(tree: str | None) -> tuple[float, float, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    proc = subprocess.Popen(
        [*CLI, "in=http", "out=echo_full", "--http-host", "127.0.0.1", "--http-port", str(port)],
        env=_env(tree, {}),
    )
    try:
        _wait(lambda: _models(url) is not None, proc)
        wall, cpu = time.monotonic() - start, process_cpu_seconds(proc.pid)
        return wall, cpu, _first_chat(url)
    finally:
        stop([proc])


def _one_host_env(tree: str | None, root: str) -> dict[str, str]:
    """File discovery under `root` and the TCP request plane: no etcd or NATS."""
    one_host = {"DYN_DISCOVERY_BACKEND": "file", "DYN_REQUEST_PLANE": "tcp", "DYN_FILE_KV": root}
    env = _env(tree, one_host)
    env.pop("NATS_SERVER", None)
    return env


def _dyn_frontend(env: dict[str, str]) -> tuple[subprocess.Popen, str, float, float]:
    """`in=http out=dyn` started and answering: the process, its URL, and the wall and CPU
    seconds from its start to its first 200 on /v1/models (an empty list: no worker yet)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    proc = subprocess.Popen(
        [*CLI, "in=http", "out=dyn", "--http-host", "127.0.0.1", "--http-port", str(port)],
        env=env,
    )
    try:
        _wait(lambda: _models(url) is not None, proc)
    except BaseException:
        stop([proc])
        raise
    return proc, url, time.monotonic() - start, process_cpu_seconds(proc.pid)


def dyn_start(tree: str | None) -> tuple[float, float, None]:
    with tempfile.TemporaryDirectory() as root:
        proc, _, wall, cpu = _dyn_frontend(_one_host_env(tree, root))
        stop([proc])
        return wall, cpu, None


def worker_start(tree: str | None) -> tuple[float, float, None]:
    with tempfile.TemporaryDirectory() as root:
        env = _one_host_env(tree, root)
        frontend, url, _, _ = _dyn_frontend(env)
        procs = [frontend]
        try:
            start = time.monotonic()
            worker = [*CLI, "in=dyn://startup.backend.generate", "out=echo_full"]
            procs.append(subprocess.Popen([*worker, "--model-name", "echo"], env=env))
            _wait(lambda: _models(url) == ["echo"], procs[-1])
            return time.monotonic() - start, process_cpu_seconds(procs[-1].pid), None
        finally:
            stop(reversed(procs))


#: The `floor` measure's program (pydantic's first model loads its plugins, so one is defined).
LIBRARIES = (
    "import starlette.applications, starlette.routing, uvicorn, prometheus_client, uvloop\n"
    "from pydantic import BaseModel\n"
    "class First(BaseModel):\n"
    "    x: int\n"
)


def library_floor(tree: str | None) -> tuple[float, float, None]:
    """The wall and CPU seconds of a fresh interpreter importing `LIBRARIES`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", LIBRARIES], env=_env(tree, {}), check=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, cpu, None


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--before", help="a tree with the `packages` to compare against")
    args = p.parse_args()
    trees: list[str | None] = [None, args.before] if args.before else [None]
    times: dict[tuple[str, str], list[tuple[float, float, float | None]]] = {}
    measures = (("http", http_start), ("dyn", dyn_start), ("worker", worker_start))
    measures += (("floor", library_floor),)
    for _, measure in measures:  # untimed: writes the bytecode cache
        for tree in trees:
            measure(tree)
    for _ in range(args.rounds):
        for what, measure in measures:
            for tree in trees if what != "floor" else [None]:
                label = "libraries" if what == "floor" else "before" if tree else "now"
                wall, cpu, chat = measure(tree)
                times.setdefault((what, label), []).append((wall, cpu, chat))
                report = {"what": what, "code": label, "wall_s": round(wall, 3)}
                report["cpu_s"] = round(cpu, 3)
                if chat is not None:
                    report["first_chat_s"] = round(chat, 3)
                print(json.dumps(report))
    for (what, label), runs in times.items():
        summary = {
            "what": what,
            "code": label,
            "median_wall_s": round(statistics.median(w for w, _, _ in runs), 3),
            "median_cpu_s": round(statistics.median(c for _, c, _ in runs), 3),
        }
        chats = [t for _, _, t in runs if t is not None]
        if chats:
            summary["median_first_chat_s"] = round(statistics.median(chats), 3)
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
