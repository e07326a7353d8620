"""End to end over real HTTP: `dynamo-run in=http` as a subprocess, the openai client, and curl-like calls."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time

import httpx
import openai
import pytest


@pytest.fixture
def echo_full(start_server):
    return start_server("out=echo_full", "--model-name", "echo")


@pytest.fixture
def echo_core(start_server, smollm2_gguf):
    return start_server("out=echo_core", str(smollm2_gguf), "--model-name", "smol")


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key="none", max_retries=0)


def test_models_health_live(echo_full):
    models = client(echo_full).models.list()
    assert [m.id for m in models.data] == ["echo"]
    assert httpx.get(f"{echo_full.url}/health").json()["status"] == "healthy"
    assert httpx.get(f"{echo_full.url}/live").status_code == 200


def test_chat_unary_and_stream(echo_full):
    c = client(echo_full)
    resp = c.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hello"}])
    assert resp.choices[0].message.content == "hello"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.completion_tokens == 5
    stream = c.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "héllo"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "héllo"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5


def test_completions(echo_full):
    resp = client(echo_full).completions.create(model="echo", prompt="abc", max_tokens=2)
    assert resp.choices[0].text == "ab"
    assert resp.choices[0].finish_reason == "length"


def test_sse_wire_format(echo_full):
    body = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", f"{echo_full.v1}/chat/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1,2]", 400, "JSON object"),
        (json.dumps({"model": "echo", "messages": []}).encode(), 400, "messages"),
        (
            json.dumps(
                {"model": "echo", "messages": [{"role": "user", "content": "x"}], "temperature": 9}
            ).encode(),
            400,
            "temperature",
        ),
        (
            json.dumps({"model": "nope", "messages": [{"role": "user", "content": "x"}]}).encode(),
            404,
            "nope",
        ),
        (
            json.dumps(
                {"model": "echo", "messages": [{"role": "assistant", "content": "x"}]}
            ).encode(),
            400,
            "user message",
        ),
    ],
)
def test_errors_are_openai_shaped(echo_full, body, status, needle):
    r = httpx.post(
        f"{echo_full.v1}/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == status
    err = r.json()["error"]
    assert needle in err["message"]
    assert set(err) >= {"message", "type", "code"}
    assert "Traceback" not in r.text


def test_unknown_route_is_openai_shaped(echo_full):
    r = httpx.get(f"{echo_full.url}/v1/nothing")
    assert r.status_code == 404 and "error" in r.json()


def test_openai_client_raises_not_found(echo_full):
    with pytest.raises(openai.NotFoundError):
        client(echo_full).chat.completions.create(
            model="x", messages=[{"role": "user", "content": "x"}]
        )


def test_echo_core_shows_the_template(echo_core):
    resp = client(echo_core).chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "Tell me a story"}],
        extra_body={"nvext": {"ignore_eos": True}},
    )
    text = resp.choices[0].message.content
    assert "<|im_start|>user\nTell me a story<|im_end|>" in text
    assert resp.usage.prompt_tokens == resp.usage.completion_tokens > 5


def test_echo_core_stops_at_hidden_eos_without_ignore_eos(echo_core):
    # <|im_end|> is SmolLM2's EOS: without ignore_eos the echo stops at the first one (after the
    # template's default system prompt), and the EOS itself is not shown.
    resp = client(echo_core).chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "Hi"}]
    )
    content = resp.choices[0].message.content
    assert content.startswith("<|im_start|>system\n")
    assert "<|im_end|>" not in content and "Hi" not in content
    assert resp.choices[0].finish_reason == "stop"


def test_root_level_ignore_eos_wins(echo_core):
    resp = client(echo_core).chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "Hi"}],
        extra_body={"ignore_eos": True, "nvext": {"ignore_eos": False}},
    )
    assert "<|im_end|>" in resp.choices[0].message.content


def test_stop_string(echo_core):
    resp = client(echo_core).completions.create(
        model="smol", prompt="one two three four", stop=[" three"]
    )
    assert resp.choices[0].text == "one two"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].model_extra["stop_reason"] == " three"  # which stop string, as vLLM says


def test_prompt_over_context_length_is_400(start_server, smollm2_gguf):
    server = start_server(
        "out=echo_core", str(smollm2_gguf), "--model-name", "s", "--context-length", "32"
    )
    r = httpx.post(f"{server.v1}/completions", json={"model": "s", "prompt": "word " * 100})
    assert r.status_code == 400
    assert "context length" in r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "prompt"  # not "messages" (issue 18 item 13)


def _chat_status(server, model: str, content, **extra) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(f"{server.v1}/chat/completions", json=body, timeout=30)


def test_content_parts_on_a_token_level_engine(echo_core):
    """Issue 18 items 9 and 10 over HTTP: text parts are the string they spell, an image is a
    clear 400, and malformed parts or token ids are 400s, not 500s."""
    parts = [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]
    resp = client(echo_core).chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": parts}],
        extra_body={"nvext": {"ignore_eos": True}},
    )
    assert "<|im_start|>user\nHi\nthere<|im_end|>" in resp.choices[0].message.content
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
    r = _chat_status(echo_core, "smol", [parts[0], image])
    assert r.status_code == 400 and "does not take images" in r.json()["error"]["message"]
    for extra in ({}, {"nvext": {"use_raw_prompt": True}}):
        r = _chat_status(echo_core, "smol", [{"type": "text", "text": None}], **extra)
        assert r.status_code == 400, r.text
    for ids in ([-1], [10**9]):
        r = _chat_status(echo_core, "smol", "x", nvext={"token_data": ids})
        assert r.status_code == 400 and r.json()["error"]["param"] == "nvext.token_data"


def test_null_text_part_on_a_chat_engine_is_400(echo_full):
    r = _chat_status(echo_full, "echo", [{"type": "text", "text": None}])
    assert r.status_code == 400 and "content part 0" in r.json()["error"]["message"]


def test_metrics(echo_full):
    client(echo_full).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hi"}]
    )
    text = httpx.get(f"{echo_full.url}/metrics").text
    for name in (
        "dynamo_frontend_requests_total",
        "dynamo_frontend_inflight_requests",
        "dynamo_frontend_request_duration_seconds",
        "dynamo_frontend_time_to_first_token_seconds",
        "dynamo_frontend_inter_token_latency_seconds",
        "dynamo_frontend_input_sequence_tokens",
        "dynamo_frontend_output_sequence_tokens",
    ):
        assert name in text
    assert (
        'dynamo_frontend_requests_total{endpoint="chat_completions",model="echo",request_type="unary",status="success"} 1.0'
        in text
    )


def test_tokenizer_cache_metrics(echo_core):
    system = "You answer questions about this document. " * 40  # over the caching threshold
    for question in ("First?", "Second?"):
        client(echo_core).chat.completions.create(
            model="smol",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
            max_tokens=1,
        )
    metrics = {}
    for line in httpx.get(f"{echo_core.url}/metrics").text.splitlines():
        if line.startswith("dynamo_frontend_tokenizer_cache"):
            name, value = line.rsplit(" ", 1)
            metrics[name] = float(value)
    assert metrics['dynamo_frontend_tokenizer_cache_enabled{model="smol"}'] == 1
    assert metrics['dynamo_frontend_tokenizer_cache_misses_total{model="smol"}'] == 1
    assert metrics['dynamo_frontend_tokenizer_cache_hits_total{model="smol"}'] == 1
    cached = metrics['dynamo_frontend_tokenizer_cache_tokens_total{model="smol",source="cached"}']
    assert cached == metrics['dynamo_frontend_tokenizer_cache_size_tokens{model="smol"}'] > 200


def _inflight(server) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith("dynamo_frontend_inflight_requests{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("stream", [True, False])
def test_client_disconnect_cancels_generation(start_server, stream):
    # 1000 characters at 20 ms each would take 20 s; the request must end as soon as the client goes.
    server = start_server(
        "out=echo_full", "--model-name", "slow", env={"DYN_TOKEN_ECHO_DELAY_MS": "20"}
    )
    body = {
        "model": "slow",
        "stream": stream,
        "messages": [{"role": "user", "content": "x" * 1000}],
    }
    if stream:
        with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, timeout=10) as r:
            for n, _ in enumerate(r.iter_lines()):
                if n > 5:
                    break  # leaving the block closes the connection mid-stream
    else:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.v1}/chat/completions", json=body, timeout=1.0)
    deadline = time.monotonic() + 5
    while _inflight(server) > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _inflight(server) == 0
    assert (
        "dynamo_frontend_disconnected_clients_total 1.0" in httpx.get(f"{server.url}/metrics").text
    )


def test_sigterm_finishes_inflight_stream_and_exits_zero(start_server):
    server = start_server(
        "out=echo_full", "--model-name", "e", env={"DYN_TOKEN_ECHO_DELAY_MS": "10"}
    )
    body = {"model": "e", "stream": True, "messages": [{"role": "user", "content": "y" * 150}]}
    received: list[str] = []

    def consume() -> None:
        with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, timeout=30) as r:
            received.extend(line for line in r.iter_lines() if line)

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.5)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # Issue 18 item 13: the socket stays open during the drain, so the probes say so, and a
    # new request is told the server is going rather than refused a connection.
    live = httpx.get(f"{server.url}/live", timeout=5)
    assert (live.status_code, live.json()["status"]) == (503, "shutting_down")
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 503
    late = httpx.post(f"{server.v1}/chat/completions", json={**body, "stream": False}, timeout=5)
    assert late.status_code == 503 and "shutting down" in late.json()["error"]["message"]
    t.join(30)
    assert received[-1] == "data: [DONE]"
    text = "".join(
        json.loads(e[6:])["choices"][0]["delta"].get("content", "") for e in received[:-1]
    )
    assert text == "y" * 150
    assert server.proc.wait(30) == 0


def test_an_idle_connection_outlives_clients_keep_alive(echo_full):
    """The server keeps an idle connection open longer than clients do (httpx and the OpenAI
    SDK: 5 s), so no client reuses a connection just as the server closes it (with uvicorn's
    5 s default the soak drill's clients saw resets and "server disconnected")."""
    conn = http.client.HTTPConnection("127.0.0.1", echo_full.port, timeout=10)
    try:
        conn.request("GET", "/health")
        assert conn.getresponse().read()
        sock = conn.sock
        time.sleep(6)  # idle past httpx's keep-alive expiry and uvicorn's default
        conn.request("GET", "/health")  # on the same socket: RemoteDisconnected had it closed
        response = conn.getresponse()
        assert response.status == 200 and conn.sock is sock
    finally:
        conn.close()
