"""NATS and etcd with authentication (issue 16 item 2): credentials from upstream's environment
variables, TLS to NATS with a CA made here, a clear error when credentials are missing or wrong.
Real servers: nats-server with TLS and a user, etcd with auth enabled through etcdctl."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme

from dynamo.runtime import DistributedRuntime, DynamoRuntimeError, RuntimeConfig
from dynamo.runtime.auth import ControlPlaneAuthError, EtcdTls, etcd_options, nats_options
from dynamo.runtime.etcd import Etcd
from dynamo.testing import EtcdServer, NatsServer

NATS_CREDENTIALS = ("NATS_AUTH_USERNAME", "NATS_AUTH_PASSWORD", "NATS_AUTH_TOKEN", "NATS_TLS_CA")
ETCD_CREDENTIALS = (
    "ETCD_AUTH_USERNAME",
    "ETCD_AUTH_PASSWORD",
    "ETCD_AUTH_CA",
    "ETCD_AUTH_CLIENT_CERT",
    "ETCD_AUTH_CLIENT_KEY",
)


# -- reading the environment -----------------------------------------------------------------


def test_nats_options_in_upstreams_order(tmp_path):
    assert nats_options({}) == {}
    both = {"NATS_AUTH_USERNAME": "u", "NATS_AUTH_PASSWORD": "p", "NATS_AUTH_TOKEN": "t"}
    assert nats_options(both) == {"user": "u", "password": "p"}
    assert nats_options({"NATS_AUTH_TOKEN": "t"}) == {"token": "t"}
    with pytest.raises(ControlPlaneAuthError, match="NATS_AUTH_PASSWORD is not set"):
        nats_options({"NATS_AUTH_USERNAME": "u"})
    with pytest.raises(ControlPlaneAuthError, match="NATS_TLS_CA: no such file"):
        nats_options({"NATS_TLS_CA": str(tmp_path / "missing.pem")})
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    assert nats_options({"NATS_TLS_CA": str(tmp_path / "ca.pem")})["tls"] is not None


def test_nkey_and_creds_need_nkeys_or_a_real_file(tmp_path):
    try:
        import nkeys  # noqa: F401
    except ImportError:
        with pytest.raises(ControlPlaneAuthError, match="nkeys package"):
            nats_options({"NATS_AUTH_CREDENTIALS_FILE": str(tmp_path / "x.creds")})
    else:
        with pytest.raises(ControlPlaneAuthError, match="no such file"):
            nats_options({"NATS_AUTH_CREDENTIALS_FILE": str(tmp_path / "x.creds")})


def test_etcd_options():
    assert etcd_options({}) == {}
    env = {"ETCD_AUTH_USERNAME": "root", "ETCD_AUTH_PASSWORD": "pw"}
    assert etcd_options(env) == {"username": "root", "password": "pw"}
    with pytest.raises(ControlPlaneAuthError, match="ETCD_AUTH_USERNAME is not set"):
        etcd_options({"ETCD_AUTH_PASSWORD": "pw"})


def test_etcd_tls_options(tmp_path):
    ca = trustme.CA()
    client = ca.issue_cert("client")
    ca_path, cert_path, key_path = tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "k.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    client.cert_chain_pems[0].write_to_path(str(cert_path))
    client.private_key_pem.write_to_path(str(key_path))
    env = {"ETCD_AUTH_CLIENT_CERT": str(cert_path), "ETCD_AUTH_CLIENT_KEY": str(key_path)}
    # Files, or the PEM text itself (what upstream reads the variables as).
    tls = etcd_options({**env, "ETCD_AUTH_CA": ca.cert_pem.bytes().decode()})["tls"]
    assert tls == EtcdTls(ca.cert_pem.bytes(), cert_path.read_bytes(), key_path.read_bytes())
    assert etcd_options({"ETCD_AUTH_CA": str(ca_path)}) == {"tls": EtcdTls(ca_path.read_bytes())}
    with pytest.raises(ControlPlaneAuthError, match="ETCD_AUTH_CLIENT_KEY is not set"):
        etcd_options({"ETCD_AUTH_CLIENT_CERT": str(cert_path)})
    with pytest.raises(ControlPlaneAuthError, match="ETCD_AUTH_CA: no such file"):
        etcd_options({"ETCD_AUTH_CA": str(tmp_path / "missing.pem")})
    user = {"ETCD_AUTH_USERNAME": "root", "ETCD_AUTH_PASSWORD": "pw"}
    assert etcd_options({**user, **env})["username"] == "root"  # both together


# -- real servers ----------------------------------------------------------------------------


class SecureNats(NatsServer):
    """nats-server with TLS (a certificate from `ca`) and one user."""

    def __init__(self, ca: trustme.CA, user: str, password: str):
        super().__init__()
        cert = ca.issue_cert("127.0.0.1")
        self.cert_path = self.data_dir / "cert.pem"
        self.key_path = self.data_dir / "key.pem"
        cert.cert_chain_pems[0].write_to_path(str(self.cert_path))
        cert.private_key_pem.write_to_path(str(self.key_path))
        self.user, self.password = user, password

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--tls",
            "--tlscert",
            str(self.cert_path),
            "--tlskey",
            str(self.key_path),
            "--user",
            self.user,
            "--pass",
            self.password,
        ]


def etcdctl(server: EtcdServer, *args: str) -> None:
    binary = Path(sys.executable).parent / "etcdctl"
    found = str(binary) if binary.is_file() else shutil.which("etcdctl")
    if found is None:
        pytest.skip("no etcdctl")
    subprocess.run([found, "--endpoints", server.url, *args], check=True, capture_output=True)


@pytest.fixture
def secure_servers(tmp_path, monkeypatch):
    for variable in (*NATS_CREDENTIALS, *ETCD_CREDENTIALS):
        monkeypatch.delenv(variable, raising=False)
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    with EtcdServer() as etcd, SecureNats(ca, "worker", "n4ts-pw") as nats:
        etcdctl(etcd, "user", "add", "root:etcd-pw")
        etcdctl(etcd, "auth", "enable")
        yield etcd, nats, ca_path


@pytest.mark.integration
async def test_credentials_let_us_in_and_their_absence_does_not(secure_servers, monkeypatch):
    etcd, nats, ca_path = secure_servers
    config = RuntimeConfig((etcd.url,), nats.url)
    monkeypatch.setenv("NATS_TLS_CA", str(ca_path))

    # No etcd credentials: refused at once with a line naming the settings (no endless retry).
    with pytest.raises(ControlPlaneAuthError, match="ETCD_AUTH_USERNAME"):
        await asyncio.wait_for(DistributedRuntime(config=config).ensure_connected(), 10)
    monkeypatch.setenv("ETCD_AUTH_USERNAME", "root")
    monkeypatch.setenv("ETCD_AUTH_PASSWORD", "wrong")
    with pytest.raises(ControlPlaneAuthError, match=r"etcd .* refused our credentials"):
        await asyncio.wait_for(DistributedRuntime(config=config).ensure_connected(), 10)
    monkeypatch.setenv("ETCD_AUTH_PASSWORD", "etcd-pw")

    # etcd lets us in now; NATS without a user does not.
    with pytest.raises(ControlPlaneAuthError, match=r"NATS .* refused our credentials"):
        await asyncio.wait_for(DistributedRuntime(config=config).ensure_connected(), 10)
    monkeypatch.setenv("NATS_AUTH_USERNAME", "worker")
    monkeypatch.setenv("NATS_AUTH_PASSWORD", "n4ts-pw")

    # With both, over TLS to NATS: a worker serves and a client calls it.
    worker = DistributedRuntime(config=config)
    caller = DistributedRuntime(config=config)
    try:
        await caller.ensure_connected()
        endpoint = worker.namespace("auth").component("backend").endpoint("generate")

        async def handler(request, context):
            yield {"echo": request["x"]}

        serving = asyncio.create_task(endpoint.serve_endpoint(handler))
        client = await caller.namespace("auth").component("backend").endpoint("generate").client()
        await client.wait_for_instances(10)
        answer = [item async for item in client.round_robin({"x": 42})]
        assert answer == [{"echo": 42}]
        worker.shutting_down.set()
        await asyncio.wait_for(serving, 10)
    finally:
        await caller.close()
        await worker.close()


def test_cli_says_it_in_one_line(runtime_env, dynamo_run_cmd):
    """A credentials problem stops `dynamo-run` with one line and exit code 2, no traceback."""
    result = subprocess.run(
        dynamo_run_cmd("in=dyn://auth.backend.generate", "out=echo_full"),
        env={**os.environ, **runtime_env, "ETCD_AUTH_CLIENT_CERT": "client.pem"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "ETCD_AUTH_CLIENT_CERT" in lines[0], result.stderr


@pytest.mark.integration
async def test_tcp_plane_token(runtime_env, monkeypatch):
    """`DYN_TCP_RPC_TOKEN`: a caller without the worker's token gets nothing from it (the worker
    closes the connection before reading a request); one with it is served."""
    monkeypatch.setenv("DYN_REQUEST_PLANE", "tcp")
    monkeypatch.setenv("DYN_TCP_RPC_TOKEN", "tcp-s3cret")
    worker = DistributedRuntime()
    served: list[int] = []

    async def handler(request, context):
        served.append(request["x"])
        yield {"echo": request["x"]}

    endpoint = worker.namespace("tcpauth").component("backend").endpoint("generate")
    serving = asyncio.create_task(endpoint.serve_endpoint(handler))
    callers = []
    try:
        for token, works in (("wrong", False), (None, False), ("tcp-s3cret", True)):
            if token is None:
                monkeypatch.delenv("DYN_TCP_RPC_TOKEN")
            else:
                monkeypatch.setenv("DYN_TCP_RPC_TOKEN", token)
            caller = DistributedRuntime()
            callers.append(caller)
            client = (
                await caller.namespace("tcpauth").component("backend").endpoint("generate").client()
            )
            await client.wait_for_instances(15)
            if works:
                assert [i async for i in client.round_robin({"x": 1})] == [{"echo": 1}]
            else:
                with pytest.raises(DynamoRuntimeError):
                    [i async for i in client.round_robin({"x": 0})]
        assert served == [1]
    finally:
        worker.shutting_down.set()
        await asyncio.wait_for(serving, 10)
        for caller in callers:
            await caller.close()
        await worker.close()


class SecureEtcd(EtcdServer):
    """etcd serving clients over TLS with a certificate from `ca`, and (`--client-cert-auth`)
    taking only clients that present a certificate `ca` signed."""

    def __init__(self, ca: trustme.CA):
        super().__init__()
        self.ca_path = self.data_dir / "ca.pem"
        self.cert_path = self.data_dir / "cert.pem"
        self.key_path = self.data_dir / "key.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        cert = ca.issue_cert("127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(str(self.cert_path))
        cert.private_key_pem.write_to_path(str(self.key_path))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start, and wait until the port takes TLS connections (etcd's plaintext /health check
        in `EtcdServer.start` cannot reach it)."""
        super(EtcdServer, self).start()
        deadline = time.monotonic() + 20
        context = ssl.create_default_context(cafile=str(self.ca_path))
        context.load_cert_chain(str(self.cert_path), str(self.key_path))
        while True:
            try:
                with (
                    socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1"),
                ):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("etcd did not take TLS connections") from None
                time.sleep(0.1)

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--cert-file",
            str(self.cert_path),
            "--key-file",
            str(self.key_path),
            "--client-cert-auth",
            "--trusted-ca-file",
            str(self.ca_path),
        ]


async def etcd_round_trip(url: str) -> bytes | None:
    """Connect to etcd at `url` as the runtime does, and put and read back a leased key."""
    etcd = Etcd(RuntimeConfig((url,), ""))
    try:
        await asyncio.wait_for(etcd.connect(), 10)
        await etcd.primary_lease()
        await etcd.put_leased("tls/check", b"over tls")
        return await etcd.get("tls/check")
    finally:
        await etcd.close()


@pytest.mark.integration
async def test_etcd_client_tls(tmp_path, monkeypatch):
    for variable in ETCD_CREDENTIALS:
        monkeypatch.delenv(variable, raising=False)
    ca, stranger = trustme.CA(), trustme.CA()
    client, foreign = ca.issue_cert("worker"), stranger.issue_cert("worker")
    for name, blob in (
        ("client.pem", client.cert_chain_pems[0]),
        ("client.key", client.private_key_pem),
        ("foreign.pem", foreign.cert_chain_pems[0]),
        ("foreign.key", foreign.private_key_pem),
        ("stranger.pem", stranger.cert_pem),
    ):
        blob.write_to_path(str(tmp_path / name))
    with SecureEtcd(ca) as etcd:
        # No client certificate: etcd ends the handshake; one line names the settings.
        monkeypatch.setenv("ETCD_AUTH_CA", str(etcd.ca_path))
        with pytest.raises(ControlPlaneAuthError, match="ETCD_AUTH_CLIENT_CERT"):
            await etcd_round_trip(etcd.url)
        # A certificate that another CA signed: refused too.
        monkeypatch.setenv("ETCD_AUTH_CLIENT_CERT", str(tmp_path / "foreign.pem"))
        monkeypatch.setenv("ETCD_AUTH_CLIENT_KEY", str(tmp_path / "foreign.key"))
        with pytest.raises(ControlPlaneAuthError, match="refused our credentials"):
            await etcd_round_trip(etcd.url)
        # Ours, but etcd's certificate checked against the wrong CA: we refuse etcd.
        monkeypatch.setenv("ETCD_AUTH_CLIENT_CERT", str(tmp_path / "client.pem"))
        monkeypatch.setenv("ETCD_AUTH_CLIENT_KEY", str(tmp_path / "client.key"))
        monkeypatch.setenv("ETCD_AUTH_CA", str(tmp_path / "stranger.pem"))
        with pytest.raises(ControlPlaneAuthError, match="refused our credentials"):
            await etcd_round_trip(etcd.url)
        # The right CA and our certificate: in, with leases and keys as over plaintext.
        monkeypatch.setenv("ETCD_AUTH_CA", str(etcd.ca_path))
        assert await etcd_round_trip(etcd.url) == b"over tls"
        # A plaintext client gets nowhere.
        for variable in ETCD_CREDENTIALS:
            monkeypatch.delenv(variable, raising=False)
        with pytest.raises(TimeoutError):
            await etcd_round_trip(etcd.url.replace("https://", "http://"))
