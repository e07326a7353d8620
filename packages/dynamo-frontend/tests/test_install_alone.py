"""Each engine installs into a fresh virtualenv on its own, from its wheel, and pulls no other engine."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

# A fresh venv may have to compile llama-cpp-python from source: minutes on two cores.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).parents[3]
# distribution -> (its out= names, the engine library it must bring)
ENGINES = {
    "dynamo-engine-echo": ({"echo_core", "echo_full"}, None),
    "dynamo-engine-llamacpp": ({"llamacpp"}, "llama-cpp-python"),
    "dynamo-engine-mistralrs": ({"mistralrs"}, "mistralrs"),
}
LIBRARY_MODULES = {"llama-cpp-python": "llama_cpp", "mistralrs": "mistralrs"}
ENGINE_LIBRARIES = {"llama-cpp-python", "mistralrs", "vllm", "sglang", "tensorrt-llm"}
UV = shutil.which("uv")


def _build_env() -> dict[str, str]:
    """llama-cpp-python builds from source: the same portable flags as the workspace's own build
    (root pyproject's extra-build-variables), so a wheel already built for the lock is reused."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    flags = root["tool"]["uv"]["extra-build-variables"]["llama-cpp-python"]
    return {**os.environ, **flags}


BUILD_ENV = _build_env()


def run(*cmd: str) -> str:
    return subprocess.run(
        cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=BUILD_ENV
    ).stdout


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    if UV is None:
        pytest.skip("uv is not on PATH")
    out = tmp_path_factory.mktemp("wheels")
    for dist in ["dynamo-common", *ENGINES]:
        run(UV, "build", "--quiet", "--wheel", "--package", dist, "--out-dir", str(out))
    # PyPI ships llama-cpp-python as source only, and uv builds it again (minutes of C++) for a
    # new environment. The wheel the workspace's .venv was installed from is in uv's build
    # cache; docker/wheelhouse.py knows how to find it. Without it, the install builds.
    wheel = _wheelhouse_module().wheel_from_uv_cache(
        "llama-cpp-python", _locked("llama-cpp-python")
    )
    if wheel is not None:
        shutil.copy2(wheel, out / wheel.name)
    return out


def _wheelhouse_module():
    spec = importlib.util.spec_from_file_location("wheelhouse", ROOT / "docker" / "wheelhouse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _locked(dist: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == dist)


@pytest.mark.parametrize("dist", sorted(ENGINES))
def test_engine_installs_alone(wheelhouse, tmp_path, dist):
    names, library = ENGINES[dist]
    venv = tmp_path / "venv"
    run(UV, "venv", "--quiet", "--python", sys.executable, str(venv))
    python = str(venv / "bin" / "python")
    run(UV, "pip", "install", "--quiet", "--python", python, "--find-links", str(wheelhouse), dist)
    installed = {
        p["name"]
        for p in json.loads(run(UV, "pip", "list", "--python", python, "--format", "json"))
    }
    assert "dynamo-common" in installed
    assert "dynamo-frontend" not in installed  # the launcher is a separate choice
    assert installed & ENGINE_LIBRARIES == ({library} if library else set())
    assert not {d for d in ENGINES if d != dist} & installed
    found = run(
        python,
        "-c",
        # Loading each entry point imports the engine class: its imports work without the
        # launcher or any other engine installed.
        "from importlib.metadata import entry_points as e; "
        "print(' '.join(sorted(x.name for x in e(group='dynamo.engines') if x.load())))",
    ).split()
    assert set(found) == names
    if library:  # the engine library's native code loads in the fresh environment
        run(python, "-c", f"import {LIBRARY_MODULES[library]}")
