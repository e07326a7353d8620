"""The vLLM venv and model scripts' logic that runs without vLLM: which checkout the venv's
packages come from, vllm-cpu's requirements, and the SmolLM2 folder made by two processes at once."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"_script_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def checkout(tmp_path) -> tuple[Path, list[Path]]:
    """A minimal copy of a checkout's workspace packages (pyproject and one source file)."""
    repo = tmp_path / "clone"
    dirs = []
    for name in ("dynamo-common", "engine-vllm"):
        d = repo / "packages" / name
        (d / "src" / "dynamo").mkdir(parents=True)
        (d / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n')
        (d / "src" / "dynamo" / "code.py").write_text("X = 1\n")
        dirs.append(d)
    (repo / "uv.lock").write_text("version = 1\n")
    return repo, dirs


def test_an_editable_install_is_redone_for_another_checkout(checkout, tmp_path):
    env = load("vllm_cpu_env")
    repo, dirs = checkout
    key = env.workspace_key(repo, dirs, tests=True, editable=True)
    assert env.workspace_key(repo, dirs, tests=True, editable=True) == key
    other = tmp_path / "other"
    shutil.copytree(repo, other)
    moved = [other / d.relative_to(repo) for d in dirs]
    # The same packages in another checkout: editable files there are other files.
    assert env.workspace_key(other, moved, tests=True, editable=True) != key
    # A source edit needs no reinstall when editable ...
    (dirs[0] / "src" / "dynamo" / "code.py").write_text("X = 2\n")
    assert env.workspace_key(repo, dirs, tests=True, editable=True) == key


def test_wheels_are_reinstalled_when_a_source_changes(checkout, tmp_path):
    env = load("vllm_cpu_env")
    repo, dirs = checkout
    key = env.workspace_key(repo, dirs, tests=False, editable=False)
    other = tmp_path / "other"
    shutil.copytree(repo, other)
    moved = [other / d.relative_to(repo) for d in dirs]
    # ... wheels copy the code: the same sources anywhere are the same install,
    assert env.workspace_key(other, moved, tests=False, editable=False) == key
    # and a changed source is a new one.
    (dirs[1] / "src" / "dynamo" / "code.py").write_text("X = 2\n")
    assert env.workspace_key(repo, dirs, tests=False, editable=False) != key


def test_the_lock_matters_only_with_the_test_tools(checkout):
    env = load("vllm_cpu_env")
    repo, dirs = checkout
    with_tools = env.workspace_key(repo, dirs, tests=True, editable=True)
    without = env.workspace_key(repo, dirs, tests=False, editable=True)
    (repo / "uv.lock").write_text("version = 2\n")
    assert env.workspace_key(repo, dirs, tests=True, editable=True) != with_tools
    assert env.workspace_key(repo, dirs, tests=False, editable=True) == without


def test_vllm_cpu_requirements_leave_out_torch_and_extras():
    env = load("vllm_cpu_env")
    got = env.vllm_cpu_requirements(
        [
            "torch==2.13.0+cpu",
            "torchaudio; platform_machine == 'x86_64'",
            "TorchVision>=0.1",
            "numpy<3",
            "transformers >= 4.56",
            "pandas; extra == 'bench'",
            "triton; platform_machine == 'x86_64'",
        ]
    )
    assert got == ["numpy<3", "transformers >= 4.56", "triton; platform_machine == 'x86_64'"]


def test_a_folder_made_meanwhile_by_another_process_is_kept(tmp_path, monkeypatch):
    folder_script = load("smollm2_hf_folder")
    folder = tmp_path / "smollm2-hf"

    def convert(gguf: Path, out: Path) -> None:
        # Another maker finishes first, while this one converts.
        folder.mkdir()
        (folder / "config.json").write_text('{"winner": true}')
        (out / "config.json").write_text('{"winner": false}')

    monkeypatch.setattr(folder_script, "convert", convert)
    monkeypatch.setattr(folder_script, "smollm2_gguf", lambda: tmp_path / "model.gguf")
    assert folder_script.make_folder(folder) == folder
    assert (folder / "config.json").read_text() == '{"winner": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["smollm2-hf"]  # no temporary folder left


def test_a_failed_rename_without_a_complete_folder_is_an_error(tmp_path, monkeypatch):
    folder_script = load("smollm2_hf_folder")
    folder = tmp_path / "smollm2-hf"

    def convert(gguf: Path, out: Path) -> None:
        folder.mkdir()
        (folder / "partial").write_text("not a model")  # a non-empty folder, but no config
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(folder_script, "convert", convert)
    monkeypatch.setattr(folder_script, "smollm2_gguf", lambda: tmp_path / "model.gguf")
    with pytest.raises(OSError):
        folder_script.make_folder(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smollm2-hf"]


def test_tests_refuse_another_checkouts_code(tmp_path):
    conftest = importlib.util.spec_from_file_location(
        "_vllm_conftest", Path(__file__).with_name("conftest.py")
    )
    assert conftest is not None and conftest.loader is not None
    module = importlib.util.module_from_spec(conftest)
    conftest.loader.exec_module(module)
    here = Path(__file__).resolve().parents[3]
    imported_from = Path(importlib.util.find_spec("dynamo.llm").origin).resolve()  # type: ignore[union-attr]
    if not imported_from.is_relative_to(here) or imported_from.is_relative_to(sys.prefix):
        pytest.skip("this run does not import dynamo from its checkout's sources")
    assert module.foreign_checkout(here) is None
    message = module.foreign_checkout(tmp_path)
    assert message is not None and "not from this checkout" in message
