"""The command line's error paths: one clear line and exit code 2, never a traceback."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest

from dynamo.frontend.cli import __name__ as CLI_MODULE
from dynamo.testing.imports import modules_loaded_after


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", CLI_MODULE, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, result.stderr
    for needle in needles:
        assert needle in error_lines[0]


def test_unknown_engine():
    assert_one_line_error(
        run("in=http", "out=nonsense"), 2, "unknown engine 'nonsense'", "echo_core"
    )


# A missing engine package or engine library: test_gpu_engines_cli.py.


def test_flag_the_engine_cannot_use():
    assert_one_line_error(
        run("in=http", "out=echo_full", "--context-length", "100"), 2, "--context-length"
    )


def test_missing_model_file():
    assert_one_line_error(
        run("in=http", "out=echo_core", "/nonexistent/dir/model.gguf"), 2, "model.gguf"
    )


def test_unknown_input():
    assert_one_line_error(run("in=carrier-pigeon", "out=echo_full"), 2, "in=carrier-pigeon")


def test_worker_flag_with_out_dyn():
    assert_one_line_error(run("in=http", "out=dyn", "--context-length", "5"), 2, "worker flag")


@pytest.mark.parametrize("entry", [["--help"], ["run", "--help"]])
def test_help_reads_well(entry):
    if entry[0] == "run":
        result = subprocess.run(["dynamo", *entry], capture_output=True, text=True, timeout=60)
    else:
        result = run(*entry)
    assert result.returncode == 0
    for needle in (
        "in=INPUT",
        "out=ENGINE",
        "--http-port",
        "--router-mode",
        "--extra-engine-args",
        "echo_full",
    ):
        assert needle in result.stdout


def test_stdin_input_answers_once():
    result = run("out=echo_full", "--model-name", "e", stdin="Hello, stdin!")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hello, stdin!"


def test_text_input_is_multi_turn(smollm2_gguf):
    # echo_core echoes the templated prompt, so the second answer shows the first turn's history.
    result = run(
        "in=text", "out=echo_core", str(smollm2_gguf), stdin="first question\nsecond question\n"
    )
    assert result.returncode == 0, result.stderr
    answers = [line for line in result.stdout.split("User: ") if line.strip()]
    assert len(answers) == 2
    assert "first question" in answers[1] and "second question" in answers[1]
    assert "<|im_start|>user" in answers[1]


def test_dynamo_run_alias_behaves_the_same():
    result = subprocess.run(
        ["dynamo", "run", "out=echo_full", "--model-name", "e"],
        input="same",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "same"


def _process_state(pid: int) -> str:
    """Per thread, its state in /proc/PID/status (stopped, sleeping in the kernel, ...) and its
    signal masks (blocked, ignored, caught, pending: is SIGINT, bit 2, where it should be?)."""
    from pathlib import Path

    lines = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        with contextlib.suppress(OSError):
            status = (task / "status").read_text().splitlines()
            named = dict(line.split(":\t", 1) for line in status if ":\t" in line)
            wchan = (task / "wchan").read_text()
            masks = " ".join(
                f"{k}={named.get(k)}" for k in ("SigBlk", "SigIgn", "SigCgt", "SigPnd")
            )
            lines.append(f"{task.name} {named.get('Name')} {named.get('State')} {wchan} {masks}")
    return "threads: " + "; ".join(lines)


@pytest.mark.parametrize("how", ["sigint", "eof"])
def test_text_mode_leaves_at_once_at_the_prompt(how):
    """At a terminal, Ctrl-C or Ctrl-D at the prompt exits 0 without waiting for another line."""
    import os
    import pty
    import signal
    import time

    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", CLI_MODULE, "out=echo_full", "--model-name", "e"],
        stdin=terminal,
        stdout=terminal,
        stderr=subprocess.PIPE,
        text=True,
        # If it hangs, SIGABRT makes it print every thread's stack (below).
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    assert proc.stderr is not None
    os.close(terminal)
    try:
        deadline = time.monotonic() + 60
        seen = b""
        while b"User: " not in seen:
            assert time.monotonic() < deadline, seen
            seen += os.read(controller, 1024)
        if how == "sigint":
            proc.send_signal(signal.SIGINT)
        else:
            os.write(controller, b"\x04")  # Ctrl-D
        # Generous for a loaded CI host: what is tested is that no further line is awaited
        # (without the fix the process never exits), not how fast it exits.
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:  # hung: say where, in the failure's message
            state = _process_state(proc.pid)
            proc.send_signal(signal.SIGABRT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            pytest.fail(f"no exit 30 s after {how}; {state}\n{proc.stderr.read()}")
        errors = proc.stderr.read()
        assert code == 0, errors
        assert "Traceback" not in errors, errors
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
        os.close(controller)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"ETCD_ENDPOINTS": "http://127.0.0.1:notaport"}, "ETCD_ENDPOINTS"),
        ({"NATS_SERVER": "nats://127.0.0.1:99999"}, "NATS_SERVER"),
        ({"DYN_ETCD_LEASE_TTL": "abc"}, "DYN_ETCD_LEASE_TTL"),
    ],
)
def test_unusable_runtime_settings_are_one_usage_error(env, needle):
    """Issue 18 item 12: these ended in tracebacks."""
    import os

    result = subprocess.run(
        [sys.executable, "-m", CLI_MODULE, "in=http", "out=dyn"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert_one_line_error(result, 2, needle)


def test_a_busy_port_is_one_usage_error():
    """Issue 18 item 12: a busy port exited 3 with only uvicorn's log line."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(
            "in=http", "out=echo_full", "--model-name", "e",
            "--http-host", "127.0.0.1", "--http-port", str(port),
        )  # fmt: skip
    assert_one_line_error(result, 2, f"127.0.0.1:{port}", "in use")


def test_the_cli_module_does_not_load_the_chat_pipeline():
    """Start-up (issue 14 item 5): a worker or an HTTP frontend loads what its mode needs, from
    `run_mode`; importing the CLI itself must not bring in the chat pipeline and the OpenAI
    request models."""
    loaded = modules_loaded_after("import dynamo.frontend.cli")
    assert "dynamo.frontend.cli" in loaded
    assert not loaded & {"dynamo.llm.pipeline", "dynamo.llm.protocols.openai"}
