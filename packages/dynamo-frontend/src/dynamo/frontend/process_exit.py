"""Leave the process as soon as a run is over, without Python's interpreter teardown.

When `dynamo-run` returns, its work is done: a worker has drained, deregistered and revoked its
lease, every engine and connection is closed. What Python's normal exit still does after that is
tear the interpreter down: free every module, object and library one by one (700-odd modules, a
loaded model's memory). That costs about 0.2 s of CPU on a quiet machine, three quarters of a
drained worker's time from SIGTERM to exit, and 1.5 to 10 s on an oversubscribed host, where a
niced process gets a small share of a core; a scaled-down worker held its pod (and a supervisor's
restart) that long for nothing. The operating system frees all of it at once.

What must not be skipped is kept: the `atexit` handlers run (logging's flushes and closes every
handler, so the last lines reach their file; temporary files are removed), and standard output
and error are flushed. Where a non-daemon thread is still running, its work may not be done, so
the normal exit (which waits for it) is taken instead.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading


def _threads_still_working() -> bool:
    main = threading.main_thread()
    return any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate())


def exit_process(code: int) -> None:
    """Exit with `code` now, skipping only the interpreter's teardown (see the module's doc);
    raises SystemExit (the normal, slower exit) while a non-daemon thread still runs."""
    if _threads_still_working():
        sys.exit(code)
    # atexit's documented handlers run here, once (os._exit does not run them again).
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
