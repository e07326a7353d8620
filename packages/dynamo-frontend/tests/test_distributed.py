"""Frontend and workers as separate processes over real etcd and NATS (issue: distributed runtime)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[3] / "examples" / "hello_worker.py"


class Procs:
    def __init__(self, env: dict[str, str]):
        self.env = {**os.environ, "DYN_TOKEN_ECHO_DELAY_MS": "0", **env}
        self.procs: list[subprocess.Popen] = []

    def spawn(self, *cmd: str, **env: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            list(cmd),
            env={**self.env, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def worker(self, path: str, *args: str, **env: str) -> subprocess.Popen:
        return self.spawn(
            sys.executable, "-m", "dynamo.frontend.cli", f"in=dyn://{path}", *args, **env
        )

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()


@pytest.fixture
def procs(runtime_env):
    p = Procs(runtime_env)
    yield p
    p.close()


@pytest.fixture
def frontend(start_server, runtime_env):
    return start_server("out=dyn", env=runtime_env, healthy=False)


def models(server) -> list[str]:
    return [m["id"] for m in httpx.get(f"{server.v1}/models").json()["data"]]


def wait_models(server, expected: set[str], timeout: float = 30, exact: bool = True) -> float:
    start = time.monotonic()
    while (set(models(server)) != expected) if exact else not expected <= set(models(server)):
        assert time.monotonic() - start < timeout, (
            f"/v1/models is {models(server)}, expected {expected}"
        )
        time.sleep(0.05)
    return time.monotonic() - start


def chat(server, model: str, content: str, **kw):
    client = openai.OpenAI(base_url=server.v1, api_key="none", max_retries=0)
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], **kw
    )


def test_models_follow_workers_and_requests_route(procs, frontend, smollm2_gguf):
    a = procs.worker(
        "dist1.backend.generate", "out=echo_core", str(smollm2_gguf), "--model-name", "smol"
    )
    procs.worker(
        "dist1.backend.generate", "out=echo_core", str(smollm2_gguf), "--model-name", "smol"
    )
    procs.worker("dist2.backend.generate", "out=echo_full", "--model-name", "echo")
    wait_models(frontend, {"smol", "echo"}, timeout=120)  # a GGUF worker starts slowly
    asyncio.run(wait_instances("dist1.backend.generate", 2))  # the model shows with its first

    resp = chat(frontend, "smol", "Tell me a story", extra_body={"nvext": {"ignore_eos": True}})
    assert "<|im_start|>user\nTell me a story<|im_end|>" in resp.choices[0].message.content
    assert chat(frontend, "echo", "hello there").choices[0].message.content == "hello there"
    stream = chat(frontend, "echo", "streamed", stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "streamed"
    completion = openai.OpenAI(base_url=frontend.v1, api_key="none").completions.create(
        model="echo", prompt="abc"
    )
    assert completion.choices[0].text == "abc"

    # One of two workers leaves: the model stays. The other leaves: the model goes, within a second.
    a.send_signal(signal.SIGTERM)
    assert a.wait(15) == 0
    assert chat(frontend, "smol", "still here?").choices[0].message.content is not None
    procs.procs[1].send_signal(signal.SIGTERM)
    assert wait_models(frontend, {"echo"}, timeout=5) < 1.5


def test_worker_killed_mid_stream_gives_an_error_event(procs, frontend):
    victim = procs.worker(
        "dist3.backend.generate",
        "out=echo_full",
        "--model-name",
        "slow",
        DYN_TOKEN_ECHO_DELAY_MS="20",
    )
    wait_models(frontend, {"slow"})
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "z" * 2000}]}
    events = []
    start = None
    with httpx.stream("POST", f"{frontend.v1}/chat/completions", json=body, timeout=30) as r:
        for line in r.iter_lines():
            if line:
                events.append(line)
            if len(events) == 5:
                victim.kill()
                start = time.monotonic()
    assert time.monotonic() - start < 5
    assert events[-1] == "data: [DONE]"
    error_at = events.index("event: error")
    assert "error" in json.loads(events[error_at + 1].removeprefix("data: "))


def test_stream_migrates_when_its_worker_is_killed(procs, start_server, runtime_env, smollm2_gguf):
    frontend = start_server("out=dyn", "--migration-limit", "1", env=runtime_env, healthy=False)
    worker = ("dist6.backend.generate", "out=echo_core", str(smollm2_gguf), "--model-name", "smol")
    # The first worker's 80 tokens take 80 s: the stream must still be on it once the second
    # worker is up, and a GGUF worker can take over 25 s to register on a loaded machine.
    first = procs.worker(*worker, DYN_TOKEN_ECHO_DELAY_MS="1000")
    wait_models(frontend, {"smol"}, timeout=120)
    body = {
        "model": "smol",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 80,
        "ignore_eos": True,  # echo_core echoes the template's <|im_end|> too
        "messages": [{"role": "user", "content": "one two three four five " * 40}],
    }
    events: list[str] = []
    with httpx.stream("POST", f"{frontend.v1}/chat/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if line:
                events.append(line)
            if len(events) == 3:
                # The stream is on the first worker (the only one). Start a second, then kill
                # the first: the rest of the answer must come from the second.
                procs.worker(*worker, DYN_TOKEN_ECHO_DELAY_MS="10")
                asyncio.run(wait_instances("dist6.backend.generate", 2, timeout=120))
                first.kill()
    assert "event: error" not in events
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert chunks[-1]["usage"]["completion_tokens"] == 80
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    metrics = httpx.get(f"{frontend.url}/metrics").text
    assert 'dynamo_frontend_model_migration_total{model="smol"} 1.0' in metrics


def test_no_worker_is_a_clear_error(frontend):
    r = httpx.post(
        f"{frontend.v1}/chat/completions",
        json={"model": "ghost", "messages": [{"role": "user", "content": "x"}]},
    )
    assert r.status_code == 404


def test_seed_example_runs_unchanged(procs, start_server, runtime_env, smollm2_gguf):
    example = procs.spawn(
        sys.executable, str(EXAMPLE), MODEL_PATH=str(smollm2_gguf), MODEL_NAME="example"
    )
    server = start_server(env=runtime_env, healthy=False, module="dynamo.frontend")
    wait_models(server, {"example"}, timeout=120, exact=False)  # a GGUF worker starts slowly
    assert example.poll() is None
    resp = chat(server, "example", "What is the capital of France?", max_tokens=20, temperature=0)
    assert resp.choices[0].message.content
    assert resp.usage.completion_tokens <= 20


def test_batch_through_the_network(tmp_path, own_runtime_env):
    """On etcd and NATS of its own: in=batch serves the first model it finds, and the shared
    ones may still list models of other tests' killed workers."""
    procs = Procs(own_runtime_env)
    runtime_env = own_runtime_env
    try:
        procs.worker("dist4.backend.generate", "out=echo_full", "--model-name", "echo-batch")
        prompts = tmp_path / "p.jsonl"
        prompts.write_text('{"text": "one"}\n{"text": "two"}\n')
        result = subprocess.run(
            [sys.executable, "-m", "dynamo.frontend.cli", f"in=batch:{prompts}", "out=dyn"],
            env={**os.environ, **runtime_env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        lines = [json.loads(x) for x in (tmp_path / "output.jsonl").read_text().splitlines()]
        assert sorted(x["response"] for x in lines) == ["one", "two"]
    finally:
        procs.close()


@pytest.mark.parametrize("engine", ["llamacpp", "mistralrs"])
def test_real_engines_serve_as_workers(procs, frontend, smollm2_gguf, engine):
    """Both CPU engines serve as distributed workers behind a discovering frontend."""
    procs.worker(
        f"real-{engine}.backend.generate",
        f"out={engine}",
        str(smollm2_gguf),
        "--model-name",
        f"smol-{engine}",
        HF_HUB_OFFLINE="1",
    )
    wait_models(frontend, {f"smol-{engine}"}, timeout=120, exact=False)
    remote = chat(
        frontend, f"smol-{engine}", "What is the capital of France?", temperature=0, max_tokens=12
    )
    assert remote.choices[0].message.content
    assert remote.usage.completion_tokens <= 12


# -- --router-mode kv ---------------------------------------------------------------------------

KV_WORKER = Path(__file__).parent / "workers" / "kv_worker.py"
DOCUMENTS = [
    f"{word} notes: " + " ".join(f"{word}-{j}" for j in range(100))
    for word in ("alpha", "beta", "gamma", "delta")
]


async def wait_instances(path: str, count: int, timeout: float = 60) -> None:  # noqa: ASYNC109
    from dynamo.runtime import DistributedRuntime

    runtime = DistributedRuntime()
    await runtime.ensure_connected()
    try:
        ns, comp, ep = path.split(".")
        client = await runtime.namespace(ns).component(comp).endpoint(ep).client()
        deadline = time.monotonic() + timeout
        while len(client.instance_ids()) < count:
            assert time.monotonic() < deadline, client.instance_ids()
            await asyncio.sleep(0.1)
    finally:
        await runtime.close()


def ask_kv(server, document: str, model: str = "kv-model") -> str:
    # Completions: the raw prompt, no chat template, so documents share no cached prefix.
    with openai.OpenAI(base_url=server.v1, api_key="none", max_retries=0) as client:
        return client.completions.create(model=model, prompt=document).choices[0].text


def kv_model_metric(server, name: str, model: str) -> float:
    """`dynamo_frontend_{name}{model="..."}` on the frontend's /metrics (0 before it is there)."""
    metrics = httpx.get(f"{server.url}/metrics").text
    prefix = f'dynamo_frontend_{name}{{model="{model}"}} '
    return sum(
        float(line.removeprefix(prefix)) for line in metrics.splitlines() if line.startswith(prefix)
    )


def spread_documents(procs, runtime_env, start_server, smollm2_gguf, namespace, model):
    """Two KV test workers (labels 1 and 2) serving `model`, a `--router-mode kv` frontend that
    sees both, and each document asked once: the frontend, and each document's worker."""
    for label in ("1", "2"):
        procs.spawn(sys.executable, str(KV_WORKER), namespace, label, str(smollm2_gguf), model)
    server = start_server("out=dyn", "--router-mode", "kv", env=runtime_env, healthy=False)
    wait_models(server, {model}, timeout=60, exact=False)
    asyncio.run(wait_instances(f"{namespace}.backend.generate", 2))
    time.sleep(0.5)  # the frontend's own watch sees them too
    first = {doc: ask_kv(server, doc, model) for doc in DOCUMENTS}
    # Nothing in common: equal costs, so the smaller cache wins and the documents spread.
    assert set(first.values()) == {"1", "2"}
    return server, first


def test_repeated_prefixes_go_to_the_worker_that_has_them(
    runtime_env, start_server, smollm2_gguf, request
):
    namespace = "kvroute-" + request.node.name[-8:].replace("[", "").replace("]", "")
    procs = Procs(runtime_env)
    try:
        server, first = spread_documents(
            procs, runtime_env, start_server, smollm2_gguf, namespace, "kv-model"
        )
        # Asked again (and again), each document goes back to the worker that cached it.
        for _ in range(3):
            for doc in DOCUMENTS:
                assert ask_kv(server, doc) == first[doc]
        hit_rate = kv_model_metric(server, "kv_hit_rate", "kv-model")
        assert 0.6 < hit_rate < 1.0  # 12 of 16 requests found their whole document cached
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'dynamo_frontend_kv_workers_without_events{model="kv-model"} 0.0' in metrics
        assert metrics.count("dynamo_frontend_router_decisions_total{") == 2
    finally:
        procs.close()


def test_a_frontend_started_later_routes_on_what_the_workers_hold(
    runtime_env, start_server, smollm2_gguf, request
):
    """Upstream's pain: a restarted frontend's KV router knew nothing of the workers' caches
    and routed as if they were cold. The new router asks the workers to announce what they
    hold: before its first request its index has their blocks, and every document goes back
    to the worker that cached it, asked in another order than the first frontend's."""
    namespace = "kvlater-" + request.node.name[-8:].replace("[", "").replace("]", "")
    # A model name of its own: another test's killed workers leave "kv-model" in etcd a while.
    model = "kv-model-later"
    procs = Procs(runtime_env)
    try:
        first_frontend, first = spread_documents(
            procs, runtime_env, start_server, smollm2_gguf, namespace, model
        )
        held = kv_model_metric(first_frontend, "kv_index_blocks", model)
        assert held > 0
        assert first_frontend.stop() == 0

        later = start_server("out=dyn", "--router-mode", "kv", env=runtime_env, healthy=False)
        wait_models(later, {model}, timeout=60, exact=False)
        deadline = time.monotonic() + 30
        # The workers' answers, before any request.
        while kv_model_metric(later, "kv_index_blocks", model) < held:
            assert time.monotonic() < deadline, kv_model_metric(later, "kv_index_blocks", model)
            time.sleep(0.1)
        assert kv_model_metric(later, "kv_index_blocks", model) == held
        for doc in reversed(DOCUMENTS):
            assert ask_kv(later, doc, model) == first[doc]
    finally:
        procs.close()


def test_kv_flag_with_text_models_falls_back(runtime_env, start_server):
    procs = Procs(runtime_env)
    try:
        procs.worker("kvtext.backend.generate", "out=echo_full", "--model-name", "kv-echo")
        server = start_server("out=dyn", "--router-mode", "kv", env=runtime_env, healthy=False)
        wait_models(server, {"kv-echo"}, timeout=60, exact=False)
        client = openai.OpenAI(base_url=server.v1, api_key="none", max_retries=0)
        resp = client.chat.completions.create(
            model="kv-echo", messages=[{"role": "user", "content": "hi"}]
        )
        assert resp.choices[0].message.content == "hi"
    finally:
        procs.close()


async def instances_by_model(prefix: str) -> dict[str, set[int]]:
    """Model name → the instance ids whose model entries (in etcd) name it, on one endpoint."""
    from dynamo.llm.schema import MODELS_ROOT, ModelEntry, instance_id_of_model_entry
    from dynamo.runtime import DistributedRuntime

    runtime = DistributedRuntime()
    await runtime.ensure_connected()
    try:
        found: dict[str, set[int]] = {}
        for key, value in (await runtime.etcd.get_prefix(f"{MODELS_ROOT}/")).items():
            entry = ModelEntry.parse(value)
            if entry.endpoint_path == prefix:
                found.setdefault(entry.name, set()).add(instance_id_of_model_entry(key))
        return found
    finally:
        await runtime.close()


def test_two_models_on_one_endpoint_reach_only_their_own_workers(procs, frontend, smollm2_gguf):
    """Issue 18 item 5: requests alternated between the endpoint's workers whatever the model
    (wrong 400s, 502 "'token_ids'"). Also item 13: a backend_instance_id naming no worker of the
    model is the client's mistake, a 400, not a 503."""
    path = "dist18.backend.generate"
    procs.worker(path, "out=echo_core", str(smollm2_gguf), "--model-name", "smol")
    procs.worker(path, "out=echo_full", "--model-name", "other")
    wait_models(frontend, {"smol", "other"}, timeout=120)  # a GGUF worker starts slowly
    asyncio.run(wait_instances(path, 2))
    for i in range(6):
        assert chat(frontend, "other", f"hello {i}").choices[0].message.content == f"hello {i}"
        smol = chat(frontend, "smol", f"story {i}", extra_body={"nvext": {"ignore_eos": True}})
        assert f"<|im_start|>user\nstory {i}<|im_end|>" in smol.choices[0].message.content

    ids = asyncio.run(instances_by_model(path))
    [smol_id], [other_id] = ids["smol"], ids["other"]
    pinned = chat(
        frontend, "other", "pinned", extra_body={"nvext": {"backend_instance_id": other_id}}
    )
    assert pinned.choices[0].message.content == "pinned"
    for wrong in (smol_id, 0x5EED):
        with pytest.raises(openai.BadRequestError, match="backend_instance_id"):
            chat(frontend, "other", "x", extra_body={"nvext": {"backend_instance_id": wrong}})


def test_a_request_bigger_than_nats_takes_is_a_413(procs, frontend):
    """Issue 18 item 9: a body over NATS's max_payload (1 MiB by default) to a distributed model
    was a 500 (MaxPayloadError). The worker serves over NATS (the TCP plane takes 32 MiB)."""
    procs.worker(
        "dist19.backend.generate", "out=echo_full", "--model-name", "big", "--request-plane", "nats"
    )
    wait_models(frontend, {"big"}, timeout=120)
    asyncio.run(wait_instances("dist19.backend.generate", 1))
    body = {"model": "big", "messages": [{"role": "user", "content": "x" * (2 << 20)}]}
    response = httpx.post(f"{frontend.v1}/chat/completions", json=body, timeout=60)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert "at most" in error["message"] and error["code"] == "request_too_large"
    assert chat(frontend, "big", "small is fine").choices[0].message.content == "small is fine"
