"""/health tells the truth: 503 with a report until every listed model can take a request; /live
only says the process is up. In process for the report, over real etcd and NATS for workers."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import pytest

from dynamo.engines.echo import EchoFullEngine
from dynamo.frontend.http.app import AppState, build_app
from dynamo.llm import ModelType
from dynamo.llm.pipeline import OpenAIEngineModel


def client(state: AppState) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=build_app(state))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_no_model_is_not_ready_but_live():
    async with client(AppState()) as c:
        r = await c.get("/health")
        assert r.status_code == 503
        body = r.json()
        assert body == {"status": "not_ready", "models": {}, "reason": "no model is served yet"}
        assert (await c.get("/live")).status_code == 200


async def test_in_process_model_is_ready_until_shutdown():
    state = AppState()
    serves = frozenset({ModelType.Chat})
    state.models.add(OpenAIEngineModel("echo", None, EchoFullEngine(), serves))
    async with client(state) as c:
        r = await c.get("/health")
        assert r.status_code == 200
        assert r.json() == {"status": "healthy", "models": {"echo": {"ready": True}}}
        state.shutting_down = True
        r = await c.get("/health")
        assert r.status_code == 503 and r.json()["reason"] == "shutting down"


def health(server) -> tuple[int, dict]:
    r = httpx.get(f"{server.url}/health", timeout=5)
    return r.status_code, r.json()


def wait_health(server, status: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, body = health(server)
        if code == status:
            return body
        assert time.monotonic() < deadline, (code, body)
        time.sleep(0.05)


@pytest.mark.integration
def test_out_dyn_ready_only_with_a_worker(start_server, own_runtime_env, dynamo_run_cmd):
    runtime_env = own_runtime_env  # the shared etcd may list other tests' models
    frontend = start_server("out=dyn", env=runtime_env, healthy=False)
    code, body = health(frontend)
    assert code == 503 and body["reason"] == "no model is served yet"
    worker = subprocess.Popen(
        dynamo_run_cmd("in=dyn://ready.backend.generate", "out=echo_full", "--model-name", "echo"),
        env={**os.environ, **runtime_env, "DYN_TOKEN_ECHO_DELAY_MS": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = wait_health(frontend, 200)
        assert body == {"status": "healthy", "models": {"echo": {"ready": True, "workers": 1}}}
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        # The request plane notices the dead worker at once; /health follows without waiting
        # for its etcd lease to expire.
        chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(f"{frontend.v1}/chat/completions", json=chat, timeout=30)
        assert r.status_code == 503, r.text
        code, body = health(frontend)
        assert code == 503, body
        # Listed as not ready, or already gone with its last worker (the TCP plane sees the
        # socket close at once): which one depends on whether the model watcher has run yet.
        if body["models"]:
            assert body["models"] == {"echo": {"ready": False, "workers": 0}}
            assert body["reason"] == "no worker can take requests for: echo"
        else:
            assert body["reason"] == "no model is served yet", body
        assert (httpx.get(f"{frontend.url}/live")).status_code == 200
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
