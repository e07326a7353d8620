"""Two `in=dyn://... out=vllm` workers behind `in=http out=dyn --router-mode kv` (real etcd, NATS,
vLLM): KV-aware routing on vLLM's own KV events, load metrics from vLLM's scheduler statistics,
a client disconnect that aborts the vLLM request, and a stream that migrates when its worker dies.

The workers are shared by the module (each vLLM start is ~40 s on two cores); the migration test
kills one of them, so it runs last.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import openai
import pytest

from dynamo.testing.wait import wait_for

pytestmark = [pytest.mark.vllm, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

NAMESPACE = "vllmkv"
MODEL = "smol-vllm"
BLOCK = 32
GAUGE = re.compile(r'^dynamo_frontend_(worker_[a-z_]+)\{model="smol-vllm",worker="([0-9a-f]+)"\} (\S+)$', re.M)  # fmt: skip
# Long documents with nothing in common, each many KV blocks long.
DOCUMENTS = [
    f"{topic} report. " + " ".join(f"{topic} item {i} is fine." for i in range(60))
    for topic in ("Apple", "Boat", "Cloud", "Desert")
]


def worker_gauges(server) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, worker, value in GAUGE.findall(httpx.get(f"{server.url}/metrics").text):
        out.setdefault(worker, {})[name] = float(value)
    return out


@pytest.fixture(scope="module")
def module_runtime(etcd_server, nats_server):
    return {"ETCD_ENDPOINTS": etcd_server.url, "NATS_SERVER": nats_server.url}


class Worker:
    """One `in=dyn://... out=vllm` process; its output goes to a file, where the engine logs
    its instance id (the `worker` label of the frontend's load gauges)."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def instance_id(self) -> str | None:
        """Its instance id, once it serves (the runtime logs it when it registers)."""
        found = re.search(rf"serving {NAMESPACE}\.backend\.generate as instance ([0-9a-f]+)",
                          self.output())  # fmt: skip
        return found.group(1) if found else None

    def kill(self) -> None:
        """SIGKILL, as a crash; then its vLLM processes, which outlive a killed parent."""
        children = self._descendants()
        self.proc.kill()
        self.proc.wait()
        _kill_all(children)

    def stop(self) -> None:
        """SIGTERM; then whatever vLLM left behind (its shutdown SIGKILLs a slow engine core,
        whose own worker process then lives on, pinned to a core, after the test)."""
        children = self._descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _kill_all(children)
        self.log.close()

    def _descendants(self) -> list:
        import psutil

        with contextlib.suppress(psutil.NoSuchProcess):
            return psutil.Process(self.proc.pid).children(recursive=True)
        return []


def _kill_all(processes: list) -> None:
    import psutil

    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


@pytest.fixture(scope="module")
def workers(smollm2_hf, vllm_testing, module_runtime):
    env = {**os.environ, **module_runtime, **vllm_testing.server_env}
    args = vllm_testing.server_args(
        smollm2_hf, "--model-name", MODEL, "--kv-cache-block-size", str(BLOCK)
    )
    cmd = [sys.executable, "-m", "dynamo.frontend.cli", f"in=dyn://{NAMESPACE}.backend.generate"]
    started = [Worker([*cmd, *args], env) for _ in range(2)]
    yield started
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module")
def frontend(workers, start_module_server, module_runtime):
    server = start_module_server(
        "out=dyn", "--router-mode", "kv", "--migration-limit", "3",
        env=module_runtime, healthy=False,
    )  # fmt: skip

    def alive() -> None:
        for worker in workers:  # a worker that died will never report: say why at once
            if worker.proc.poll() is not None:
                pytest.fail(f"a vLLM worker exited:\n{worker.output()[-3000:]}")

    def serving() -> bool:
        alive()
        return all(w.instance_id() for w in workers)

    def reported() -> bool:
        alive()
        # A worker's load gauges appear with its first report (the router's own per-worker
        # gauges appear at discovery, before it).
        gauges = worker_gauges(server)
        ids = {w.instance_id() for w in workers}
        return set(gauges) == ids and all("worker_kv_total_blocks" in g for g in gauges.values())

    # Two steps, so that a failure says which: starting two vLLM engines takes ~40 s on an idle
    # machine, minutes on a loaded one (bounded by the module's timeout, not here); once a
    # worker serves, its load publisher repeats its report every second.
    wait_for(serving, within=780, what="both vLLM workers serving")
    try:
        wait_for(reported, within=60, what="both vLLM workers' load reports")
    except AssertionError as e:  # say what was there instead
        seen = "\n".join(f"{w}: {g}" for w, g in worker_gauges(server).items()) or "none"
        logs = "\n".join(f"--- worker {i}:\n{w.output()[-2000:]}" for i, w in enumerate(workers))
        pytest.fail(f"{e}; gauges seen:\n{seen}\n{logs}\n--- frontend:\n{server.output()[-2000:]}")
    return server


@pytest.fixture(scope="module")
def client(frontend):
    return openai.OpenAI(base_url=frontend.v1, api_key="none", max_retries=0, timeout=300)


def cached_tokens(client, document: str) -> int:
    got = client.completions.create(model=MODEL, prompt=document, max_tokens=2)
    details = got.usage.prompt_tokens_details
    return (details.cached_tokens or 0) if details else 0


def test_workers_report_vllms_capacity(frontend):
    for gauges in worker_gauges(frontend).values():
        assert gauges["worker_kv_total_blocks"] > 0
        assert gauges["worker_request_slots_total"] > 0
        assert gauges["worker_request_slots_used"] == 0


def test_repeated_long_prompts_go_to_the_worker_that_cached_them(frontend, client):
    assert all(cached_tokens(client, doc) == 0 for doc in DOCUMENTS)  # nothing cached yet
    text = httpx.get(f"{frontend.url}/metrics").text
    # Equal costs for fresh documents: they spread over both workers.
    assert text.count("dynamo_frontend_router_decisions_total{") == 2
    for _ in range(2):
        for doc in DOCUMENTS:
            # vLLM's own count of prefix-cache hits: the request reached the worker that has it.
            assert cached_tokens(client, doc) >= 4 * BLOCK
    assert (
        'dynamo_frontend_kv_workers_without_events{model="smol-vllm"} 0.0'
        in httpx.get(f"{frontend.url}/metrics").text
    )


def test_client_disconnect_aborts_the_vllm_request(frontend):
    body = {"model": MODEL, "prompt": "Count to a thousand:", "max_tokens": 1500,
            "ignore_eos": True, "stream": True}  # fmt: skip
    with httpx.stream("POST", f"{frontend.v1}/completions", json=body, timeout=120) as resp:
        lines = resp.iter_lines()
        for _ in range(5):
            next(line for line in lines if line.startswith("data:"))
        # vLLM's own scheduler counts the request as running ...
        wait_for(
            lambda: (
                sum(g["worker_request_slots_used"] for g in worker_gauges(frontend).values()) == 1
            ),
            what="vLLM reporting the request running",
        )
    # ... and, the client gone, no longer: aborted, not generated to 1500 tokens (~50 s here).
    wait_for(
        lambda: all(
            g["worker_request_slots_used"] == 0 and g["worker_kv_used_blocks"] == 0
            for g in worker_gauges(frontend).values()
        ),
        within=10,
        what="vLLM reporting no running request",
    )


def test_stream_migrates_when_its_vllm_worker_is_killed(frontend, client, workers):
    by_id = {w.instance_id(): w for w in workers}
    assert None not in by_id and len(by_id) == 2
    stream = client.completions.create(
        model=MODEL, prompt="Tell a long story about a dragon.", max_tokens=120,
        temperature=0, stream=True, extra_body={"ignore_eos": True},
    )  # fmt: skip
    text, killed, finish = "", None, None
    for chunk in stream:
        if not chunk.choices:
            continue
        text += chunk.choices[0].text
        finish = chunk.choices[0].finish_reason or finish
        if killed is None and len(text) > 20:
            busy = [w for w, g in worker_gauges(frontend).items() if g["worker_request_slots_used"]]
            if len(busy) == 1:  # vLLM's report of the running request names the worker
                killed = by_id[busy[0]]
                killed.kill()
    assert killed is not None
    assert [w.proc.poll() is None for w in workers].count(True) == 1
    # The stream went on, on the other worker, to its full length.
    assert finish == "length"
    assert len(text) > 100
