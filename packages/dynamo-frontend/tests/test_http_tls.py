"""HTTPS, an API key and the body limit on a real `dynamo-run in=http` process (certificates made
here with trustme), and a clean exit on SIGTERM."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import time

import httpx
import openai
import pytest
import trustme


@pytest.fixture
def tls_server(tmp_path, free_port, dynamo_run_cmd):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    verify = ssl.create_default_context()
    ca.configure_trust(verify)
    port = free_port()
    log = (tmp_path / "server.log").open("w+")
    proc = subprocess.Popen(
        dynamo_run_cmd(
            "in=http",
            "out=echo_full",
            "--model-name",
            "echo",
            "--http-host",
            "127.0.0.1",
            "--http-port",
            str(port),
            "--tls-cert-path",
            str(cert_path),
            "--tls-key-path",
            str(key_path),
            "--max-request-body-size",
            "64KiB",
        ),
        env={**os.environ, "DYN_TOKEN_ECHO_DELAY_MS": "0", "DYN_API_KEY": "s3cret"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.seek(0) or log.read()
        try:
            if httpx.get(f"{url}/health", verify=verify, timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the HTTPS server did not come up"
            time.sleep(0.1)
    yield url, verify, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()


def test_https_key_body_limit_and_sigterm(tls_server):
    url, verify, proc = tls_server
    http = httpx.Client(verify=verify)
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret", http_client=http, max_retries=0)
    answer = sdk.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "over tls"}]
    )
    assert answer.choices[0].message.content == "over tls"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=f"{url}/v1", api_key="wrong", http_client=http, max_retries=0
        ).models.list()
    # Our CA is needed: a client that trusts only the system's refuses the certificate.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")
    # Plain HTTP on the TLS port gets no answer.
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https", "http") + "/health", timeout=2)

    def chunked_body():
        yield b'{"model": "echo", "messages": [{"role": "user", "content": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}]}'

    r = http.post(
        f"{url}/v1/chat/completions",
        content=chunked_body(),
        headers={"Authorization": "Bearer s3cret", "Content-Type": "application/json"},
    )
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "request_too_large"
    http.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
