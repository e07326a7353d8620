"""`--http-workers N`: N frontend processes serving one HTTP port, so a frontend host uses all its
cores (one Python process streams on one core).

How it works:

- The parent binds the port once (a busy port is one usage error, port 0 gets a real port), with
  `SO_REUSEPORT`, and never listens on it: it only holds the port.
- It forks N children before any event loop, thread or connection exists. Each child binds its
  own listening socket to that port with `SO_REUSEPORT`, so the kernel spreads new connections
  over the children by their addresses (no accept stampede, no process taking them all), and then
  runs the ordinary `in=http out=dyn` frontend: its own runtime connection, model watcher,
  routers and KV index, fed from the same discovery and KV events as the others (every frontend
  subscribes to every event; nothing is shared or split between them).
- The parent forwards SIGINT and SIGTERM to the children, each of which drains as a single
  frontend does, and exits 0 when they all have. The children are in their own process group (a
  terminal's Ctrl-C reaches only the parent, so each child gets one signal, not two: a second
  one would skip the drain) and get SIGTERM if the parent dies (`PR_SET_PDEATHSIG`). A child that
  exits on its own stops the others, and the parent exits with its status: a supervisor
  restarts the whole frontend.

Only `out=dyn` can run several processes: an engine in the process (`out=llamacpp`, ...) cannot
be shared between processes, and N copies of it would be N models. What each process keeps to
itself: admission limits (`--max-concurrent-requests` is per process), stored Responses, and
`/metrics` (each scrape is one process's; `dynamo_frontend_http_worker` names which).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from dynamo.frontend.flags import UsageError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerSlot:
    """What a child process knows about itself: which of how many, and the port to share."""

    index: int
    count: int
    port: int


#: Set in a child process (never in a single-process frontend).
_slot: WorkerSlot | None = None


def current_slot() -> WorkerSlot | None:
    """This process's place among the HTTP workers, or None when it is the only frontend."""
    return _slot


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGTERM this process when its parent dies (a no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def run_http_workers(count: int, host: str, port: int, serve: Callable[[], int]) -> int:
    """Fork `count` children that each run `serve()` (the whole frontend, returning its exit
    status) on the shared port; supervise them and return the exit status (0 after a clean stop
    on SIGINT/SIGTERM)."""
    global _slot
    from dynamo.frontend.http.server import listen  # (imported before the fork: once for all)

    if not hasattr(socket, "SO_REUSEPORT"):
        raise UsageError("--http-workers needs SO_REUSEPORT, which this system lacks")
    # Bound, never listening: it only holds the port (and a busy port is one usage line).
    holder = listen(host, port, reuse_port=True)
    port = holder.getsockname()[1]
    parent = os.getpid()
    children: dict[int, int] = {}  # pid -> index
    for index in range(1, count + 1):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                # The signal handlers stay the parent's as they were before the fork (Ctrl-C
                # and SIGTERM stop a frontend that is still starting; the server then installs
                # its draining ones).
                os.setpgid(0, 0)
                _die_with_parent(parent)
                holder.close()
                _slot = WorkerSlot(index, count, port)
                code = serve()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index
    log.info("%d HTTP processes on port %d: pids %s", count, port, " ".join(map(str, children)))
    try:
        return _supervise(children)
    finally:
        holder.close()  # held until the end: the port stays ours while a child starts


def _supervise(children: dict[int, int]) -> int:
    alive = dict(children)
    stopping = False

    def forward(sig: int, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        while alive:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            index = alive.pop(pid, None)
            if index is None:
                continue
            code = os.waitstatus_to_exitcode(wait_status)
            if code != 0:
                status = status or (code if code > 0 else 1)
            if not stopping:
                log.error(
                    "HTTP process %d (pid %d) exited with status %d: stopping the others",
                    index,
                    pid,
                    code,
                )
                forward(signal.SIGTERM)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
