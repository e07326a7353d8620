"""Each engine installs into a fresh virtualenv on its own, from its wheel, and pulls no other engine."""

from __future__ import annotations

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
    return out


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
        "from importlib.metadata import entry_points as e; "
        "print(' '.join(sorted(x.name for x in e(group='dynamo.engines'))))",
    ).split()
    assert set(found) == names
