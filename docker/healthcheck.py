"""The HEALTHCHECK of every Dynamo-Py image: healthy when `dynamo-run` serves what it was asked to.

One image runs either an HTTP frontend or a worker, and only the command line tells which, so
this reads the `dynamo-run` process's own arguments and environment from /proc:

- `in=http` (or `python -m dynamo.frontend`): `GET http://127.0.0.1:PORT/health` answers 200,
  which the frontend does once it serves at least one model. PORT is `--http-port` (default 8080).
- `in=dyn://...` (a worker, no HTTP port): the container holds an established TCP connection to
  NATS (the port of `NATS_SERVER`, default 4222) and one to etcd (the port of the first
  `ETCD_ENDPOINTS` entry, default 2379). A worker opens both only after its model has loaded,
  just before it registers, and loses them when it stops or is cut off.
- any other input: the process is alive.

Exit status 0 is healthy, 1 unhealthy (Docker's convention). Standard library only.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

ESTABLISHED = "01"


def find_dynamo_run() -> tuple[int, list[str]] | None:
    """The pid and argv of the `dynamo-run` (or `python -m dynamo.frontend`) process."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        for i, arg in enumerate(argv):
            if arg.endswith("/dynamo-run") or arg == "dynamo-run":
                return int(proc.name), argv[i + 1 :]
            if arg == "-m" and argv[i + 1 : i + 2] == ["dynamo.frontend"]:
                return int(proc.name), ["in=http", "out=dyn", *argv[i + 2 :]]
    return None


def flag(args: list[str], name: str, default: str) -> str:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def process_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def http_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def connected_to(port: int) -> bool:
    """Whether this network namespace has an established TCP connection to remote `port`."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == ESTABLISHED and int(remote.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def url_port(url: str, default: int) -> int:
    return urlsplit(url if "://" in url else f"tcp://{url}").port or default


def healthy() -> bool:
    found = find_dynamo_run()
    if found is None:
        return False
    pid, args = found
    inputs = [a.split("=", 1)[1] for a in args if a.startswith("in=")]
    if not inputs:
        return True
    if inputs[0] == "http":
        return http_healthy(int(flag(args, "--http-port", "8080")))
    if inputs[0].startswith("dyn://"):
        env = process_env(pid)
        nats = url_port(env.get("NATS_SERVER") or "nats://localhost:4222", 4222)
        etcd = url_port((env.get("ETCD_ENDPOINTS") or "http://localhost:2379").split(",")[0], 2379)
        return connected_to(nats) and connected_to(etcd)
    return True


if __name__ == "__main__":
    sys.exit(0 if healthy() else 1)
