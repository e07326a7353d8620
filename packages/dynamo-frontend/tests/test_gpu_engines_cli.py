"""The command line around the GPU engines (vLLM, SGLang, TensorRT-LLM): a missing package or
library is one line naming what to install, the default engine follows the model's kind, and
the parallelism flags reach the engines that use them and are refused by the others."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

import dynamo.llm.engine as engine_module
from dynamo.frontend import cli
from dynamo.frontend import default_engine as default_engine_module
from dynamo.frontend.default_engine import default_engine, is_gguf_model
from dynamo.frontend.flags import UsageError, parse_command_line
from dynamo.frontend.local_model import check_engine_flags
from dynamo.llm.engine import installed_engines
from dynamo.llm.errors import EngineError

PARALLEL_FLAGS = [
    "--tensor-parallel-size",
    "4",
    "--base-gpu-id",
    "2",
    "--num-nodes",
    "2",
    "--node-rank",
    "0",
    "--leader-addr",
    "10.0.0.1:5000",
]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", cli.__name__, *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, stderr
    return lines[0]


# -- a missing engine package or library -------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "package"),
    [
        ("vllm", "dynamo-engine-vllm"),
        ("sglang", "dynamo-engine-sglang"),
        ("trtllm", "dynamo-engine-trtllm"),
    ],
)
def test_a_missing_engine_package_is_named(monkeypatch, capsys, engine, package) -> None:
    present = {n: ep for n, ep in installed_engines().items() if n != engine}
    monkeypatch.setattr(engine_module, "installed_engines", lambda: present)
    assert cli.main(["in=http", f"out={engine}", "Qwen/Qwen3-0.6B"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == f"dynamo-run: error: engine '{engine}' is not installed: pip install {package}"


@pytest.mark.parametrize(
    ("engine", "module", "requirement"),
    [("sglang", "sglang", "sglang"), ("trtllm", "tensorrt_llm", "tensorrt-llm")],
)
def test_a_missing_library_is_named_before_the_model_is_looked_at(
    engine, module, requirement
) -> None:
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    # The model does not exist: the library is reported first, so nothing is downloaded for an
    # engine that cannot run.
    result = run_cli("in=http", f"out={engine}", "/no/such/model")
    assert result.returncode == 2, result.stderr
    assert one_error_line(result.stderr).endswith(
        f"out={engine} needs {requirement}, which is not installed: pip install {requirement}"
    )


# -- the default engine ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "gguf"),
    [
        (None, True),
        ("Qwen/Qwen3-0.6B", False),
        ("hf://Qwen/Qwen3-0.6B", False),
        ("Qwen/Qwen3-0.6B-GGUF", True),
        ("bartowski/Llama-3.2-3B-Instruct-GGUF:Q8_0", True),
        ("org/model:Q4_K_M", True),
        ("/models/SmolLM2-135M-Instruct.Q4_1.gguf", True),
    ],
)
def test_model_kinds(model, gguf) -> None:
    assert is_gguf_model(model) is gguf


def test_folders_are_judged_by_their_files(tmp_path) -> None:
    (tmp_path / "gguf").mkdir()
    (tmp_path / "gguf" / "m.gguf").write_bytes(b"")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "model.safetensors").write_bytes(b"")
    assert is_gguf_model(str(tmp_path / "gguf"))
    assert not is_gguf_model(str(tmp_path / "hf"))


def _only(monkeypatch, usable: set[str]) -> None:
    """Pretend exactly `usable` engines are installed with their libraries."""

    def load(name: str):
        if name not in usable:
            raise EngineError(f"out={name} needs its library")
        return object

    names = {n: None for n in ("llamacpp", "mistralrs", "vllm", "sglang", "trtllm")}
    monkeypatch.setattr(default_engine_module, "installed_engines", lambda: names)
    monkeypatch.setattr(default_engine_module, "load_engine_class", load)


def test_an_hf_model_picks_vllm_when_it_is_installed(monkeypatch) -> None:
    _only(monkeypatch, {"vllm", "llamacpp", "mistralrs"})
    assert default_engine("Qwen/Qwen3-0.6B") == "vllm"
    assert default_engine(None) == "llamacpp"  # the built-in GGUF
    assert default_engine("x/y-GGUF") == "llamacpp"


def test_without_vllm_an_hf_model_falls_to_mistralrs_never_to_llamacpp(monkeypatch) -> None:
    _only(monkeypatch, {"llamacpp", "mistralrs"})
    assert default_engine("Qwen/Qwen3-0.6B") == "mistralrs"
    _only(monkeypatch, {"llamacpp"})
    with pytest.raises(
        UsageError,
        match=r"no engine for an HF model is installed: pip install "
        r"dynamo-engine-vllm \(or dynamo-engine-mistralrs\)",
    ):
        default_engine("Qwen/Qwen3-0.6B")


def test_the_default_in_this_environment() -> None:
    """No pretending: what `dynamo run Qwen/Qwen3-0.6B` picks here."""
    has_vllm = importlib.util.find_spec("vllm") is not None
    expected = "vllm" if has_vllm else "mistralrs"
    if not has_vllm and "mistralrs" not in installed_engines():
        pytest.skip("neither vLLM nor mistral.rs is installed here")
    assert default_engine("Qwen/Qwen3-0.6B") == expected


# -- parallelism flags -------------------------------------------------------------------------


def _args(engine: str, *flags: str):
    return parse_command_line(["in=http", f"out={engine}", "/models/m", *flags])


def test_sglang_takes_every_parallelism_flag() -> None:
    cls = installed_engines()["sglang"].load()
    check_engine_flags("sglang", cls, _args("sglang", *PARALLEL_FLAGS))


def test_trtllm_takes_what_mpi_does_not_decide() -> None:
    cls = installed_engines()["trtllm"].load()
    check_engine_flags(
        "trtllm",
        cls,
        _args("trtllm", "--tensor-parallel-size", "4", "--base-gpu-id", "2", "--num-nodes", "2"),
    )
    for flag, value in (("--node-rank", "1"), ("--leader-addr", "h:1")):
        with pytest.raises(UsageError, match=f"out=trtllm does not use {flag}"):
            check_engine_flags("trtllm", cls, _args("trtllm", flag, value))


@pytest.mark.parametrize("flag", PARALLEL_FLAGS[::2])
def test_an_engine_without_parallelism_refuses_each_flag_in_one_line(flag, smollm2_gguf) -> None:
    value = PARALLEL_FLAGS[PARALLEL_FLAGS.index(flag) + 1]
    result = run_cli("in=http", "out=llamacpp", str(smollm2_gguf), flag, value)
    assert result.returncode == 2
    assert one_error_line(result.stderr) == f"dynamo-run: error: out=llamacpp does not use {flag}"


# -- --extra-engine-args as YAML (the seed's out=trtllm form) ----------------------------------


def test_extra_engine_args_from_a_yaml_file(tmp_path) -> None:
    from dynamo.frontend.run_config import parse_extra_engine_args

    path = tmp_path / "trtllm_extra.yaml"
    path.write_text("backend: pytorch\nkv_cache_config:\n  event_buffer_max_size: 1024\n")
    assert parse_extra_engine_args(str(path)) == {
        "backend": "pytorch",
        "kv_cache_config": {"event_buffer_max_size": 1024},
    }
    bad = tmp_path / "bad.yml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(UsageError, match=r"bad\.yml is not valid YAML"):
        parse_extra_engine_args(str(bad))
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(UsageError, match="must be a JSON object"):
        parse_extra_engine_args(str(listed))
    json_file = tmp_path / "args.json"
    json_file.write_text('{"dp_size": 2}')
    assert parse_extra_engine_args(str(json_file)) == {"dp_size": 2}
