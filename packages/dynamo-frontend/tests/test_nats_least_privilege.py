"""The least-privilege NATS layout the README documents, on a real nats-server: a frontend and a
worker with their own users serve a chat request end to end (model card files through the
object store included), while a frontend cannot take a worker's requests and a worker cannot
send requests to other workers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import httpx
import nats
import pytest

from dynamo.llm.schema import kv_sync_subject
from dynamo.testing import NatsServer

pytestmark = pytest.mark.integration

# The layout, as in the README (section "Securing etcd and NATS").
NATS_PERMISSIONS = """
authorization {
  users = [
    { user: frontend, password: frontend-pw, permissions: {
        publish: { allow: ["*.*", "*.*.control", "$JS.API.>", "$JS.FC.>", "namespace.*.component.*.kv_events.sync"] }
        subscribe: { allow: ["_INBOX.>", "namespace.>"] } } }
    { user: worker, password: worker-pw, permissions: {
        publish: { allow: ["_INBOX.>", "namespace.>", "$JS.API.>", "$O.>"] }
        subscribe: { allow: ["*.*", "*.*.control", "_INBOX.>", "namespace.*.component.*.kv_events.sync"] } } }
  ]
}
"""


class LockedNats(NatsServer):
    def command(self) -> list[str]:
        config = self.data_dir / "nats.conf"
        config.write_text(NATS_PERMISSIONS)
        return [*super().command(), "-c", str(config)]


@pytest.fixture
def locked_nats():
    with LockedNats() as server:
        yield server


async def violations(user: str, password: str, url: str, action) -> list[str]:
    """The permission errors the server reports while `action(nc)` runs."""
    errors: list[str] = []

    async def on_error(e: Exception) -> None:
        errors.append(str(e))

    nc = await nats.connect(url, user=user, password=password, error_cb=on_error)
    try:
        await action(nc)
        await nc.flush()
        await asyncio.sleep(0.3)
    finally:
        await nc.close()
    return [e for e in errors if "permissions violation" in e.lower()]


async def test_roles_are_kept_apart(locked_nats):
    subject = "dynamo_backend.generate-1234"

    async def ignore(msg) -> None:
        pass

    async def take_requests(nc):
        await nc.subscribe(subject, cb=ignore)

    async def send_request(nc):
        await nc.publish(subject, b"{}", reply="_INBOX.x")

    assert await violations("frontend", "frontend-pw", locked_nats.url, take_requests)
    assert await violations("worker", "worker-pw", locked_nats.url, send_request)
    # Each may do its own part.
    assert not await violations("worker", "worker-pw", locked_nats.url, take_requests)
    assert not await violations("frontend", "frontend-pw", locked_nats.url, send_request)

    # A starting KV router asks the workers to announce their blocks again; they listen for it.
    sync = kv_sync_subject("ns", "backend")

    async def ask_for_blocks(nc):
        await nc.publish(sync, b"")

    async def answer_syncs(nc):
        await nc.subscribe(sync, cb=ignore)

    assert not await violations("frontend", "frontend-pw", locked_nats.url, ask_for_blocks)
    assert not await violations("worker", "worker-pw", locked_nats.url, answer_syncs)


def test_frontend_and_worker_serve_with_their_own_users(
    locked_nats, etcd_server, start_server, dynamo_run_cmd, smollm2_gguf, tmp_path
):
    # Requests over NATS: the permissions below are the NATS request plane's.
    base = {
        "ETCD_ENDPOINTS": etcd_server.url,
        "NATS_SERVER": locked_nats.url,
        "DYN_REQUEST_PLANE": "nats",
    }
    frontend = start_server(
        "out=dyn",
        env={**base, "NATS_AUTH_USERNAME": "frontend", "NATS_AUTH_PASSWORD": "frontend-pw"},
        healthy=False,
    )
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        dynamo_run_cmd(
            "in=dyn://locked.backend.generate",
            "out=echo_core",
            str(smollm2_gguf),
            "--model-name",
            "smol",
        ),
        env={
            **os.environ,
            **base,
            "NATS_AUTH_USERNAME": "worker",
            "NATS_AUTH_PASSWORD": "worker-pw",
            "DYN_TOKEN_ECHO_DELAY_MS": "0",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        # etcd is shared with other tests: wait for this model, not any model.
        while not httpx.get(f"{frontend.url}/health").json()["models"].get("smol", {}).get("ready"):
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, frontend.output()
            time.sleep(0.2)
        body = {
            "model": "smol",
            "max_tokens": 3,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": "hello there"}],
        }
        r = httpx.post(f"{frontend.v1}/chat/completions", json=body, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] == 3
    finally:
        worker.kill()
        worker.wait()
        log.close()
