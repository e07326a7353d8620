"""`--http-workers N` (issue 14 item 4): N frontend processes on one port, each discovering the
workers itself; real processes (file discovery and the TCP plane, so nothing else is needed),
real HTTP, and signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dynamo.frontend.cli import main

pytestmark = pytest.mark.integration

ONE_HOST = ["--discovery-backend", "file", "--request-plane", "tcp"]
CLI = [sys.executable, "-m", "dynamo.frontend.cli"]


def _children(pid: int) -> set[int]:
    return {
        int(c)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for c in (task / "children").read_text().split()
    }


def _fresh(method: str, url: str, **kw) -> httpx.Response:
    """One request on a connection of its own (the kernel picks the process per connection)."""
    with httpx.Client(timeout=30) as client:
        return client.request(method, url, **kw)


def _listen(port: int) -> list[str]:
    return ["--http-host", "127.0.0.1", "--http-port", str(port)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.fixture
def stack(tmp_path, smollm2_gguf, free_port):
    """An echo_core worker and `in=http out=dyn --http-workers 2`, everything on one host."""
    env = {
        **os.environ,
        "DYN_FILE_KV": str(tmp_path / "kv"),
        "ETCD_ENDPOINTS": "http://127.0.0.1:9",  # nothing listens: file discovery needs none
        "DYN_TOKEN_ECHO_DELAY_MS": "0",
    }
    env.pop("NATS_SERVER", None)
    log = tmp_path / "frontend.log"
    worker_cmd = [*CLI, "in=dyn://hw.backend.generate", "out=echo_core", str(smollm2_gguf)]
    worker = subprocess.Popen(
        [*worker_cmd, "--model-name", "smol", *ONE_HOST],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port = free_port()
    with log.open("w") as out:
        frontend = subprocess.Popen(
            [*CLI, "in=http", "out=dyn", "--http-workers", "2", *ONE_HOST, *_listen(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def every_process_lists_the_model() -> bool:
        assert frontend.poll() is None, log.read_text()
        try:
            return all("smol" in _fresh("GET", f"{url}/v1/models").text for _ in range(12))
        except httpx.HTTPError:
            return False

    try:
        _wait(every_process_lists_the_model, "the model was never listed", 120)
        yield url, frontend, log
    finally:
        for proc in (frontend, worker):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _per_process_requests(url: str, scrapes: int) -> dict[int, float]:
    """Each HTTP process's count of successful chat requests, from its own /metrics."""
    counts: dict[int, float] = {}
    for _ in range(scrapes):
        text = _fresh("GET", f"{url}/metrics").text
        pid = int(re.search(r'_http_worker\{index="\d+",pid="(\d+)"\} 1', text).group(1))
        served = re.search(
            r'_requests_total\{endpoint="chat_completions",model="smol",'
            r'request_type="stream",status="success"\} ([0-9.]+)',
            text,
        )
        counts[pid] = max(counts.get(pid, 0.0), float(served.group(1)) if served else 0.0)
    return counts


def test_two_processes_serve_one_port_and_stop_together(stack):
    url, frontend, log = stack
    children = _children(frontend.pid)
    assert len(children) == 2
    body = {
        "model": "smol",
        "stream": True,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 8,
    }
    for _ in range(24):
        r = _fresh("POST", f"{url}/v1/chat/completions", json=body)
        assert r.status_code == 200
        assert r.text.rstrip().endswith("data: [DONE]")
    counts = _per_process_requests(url, 40)
    # Both processes answered scrapes and chat requests (each connection lands on either one:
    # the chance that all 24 land on one is 2^-23), and every request was counted exactly once.
    assert set(counts) == children
    assert all(n > 0 for n in counts.values()), counts
    assert sum(counts.values()) == 24
    frontend.send_signal(signal.SIGTERM)
    assert frontend.wait(30) == 0, log.read_text()
    assert not any(_alive(pid) for pid in children)


def test_sigint_stops_every_process(stack):
    _, frontend, log = stack
    children = _children(frontend.pid)
    frontend.send_signal(signal.SIGINT)
    assert frontend.wait(30) == 0, log.read_text()
    assert not any(_alive(pid) for pid in children)


def test_a_process_that_dies_stops_the_frontend(stack):
    _, frontend, log = stack
    first, second = sorted(_children(frontend.pid))
    os.kill(first, signal.SIGKILL)
    # The parent stops the other one and exits with a failure, for a supervisor to restart.
    assert frontend.wait(30) != 0
    _wait(lambda: not _alive(second), "the other HTTP process outlived the frontend", 10)
    assert "exited with status -9: stopping the others" in log.read_text()


def test_the_children_die_with_the_parent(stack):
    _, frontend, _ = stack
    children = _children(frontend.pid)
    frontend.kill()
    frontend.wait()
    _wait(lambda: not any(_alive(pid) for pid in children), "orphaned HTTP processes", 10)


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["in=http", "out=echo_core", "--http-workers", "2"],
            "--http-workers N needs out=dyn: an engine in this process cannot be shared between "
            "processes",
        ),
        (
            ["in=text", "out=dyn", "--http-workers", "2"],
            "--http-workers is a flag of the HTTP server: it needs in=http",
        ),
    ],
)
def test_refused_where_it_cannot_apply(argv, line, capsys):
    assert main(argv) == 2
    assert line in capsys.readouterr().err


def test_at_least_one(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["in=http", "out=dyn", "--http-workers", "0"])
    assert exited.value.code == 2
    assert "--http-workers" in capsys.readouterr().err
