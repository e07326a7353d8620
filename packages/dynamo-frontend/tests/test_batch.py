from __future__ import annotations

import json
import os
import subprocess


def test_batch_writes_output_and_reports_bad_lines(tmp_path, dynamo_run_cmd):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        '{"text": "What is the capital of France?"}\n'
        "this line is not json\n"
        '{"text": "What is the capital of Spain?"}\n'
        '{"nottext": 1}\n'
        '{"text": "Bonjour"}\n'
    )
    result = subprocess.run(
        dynamo_run_cmd(f"in=batch:{prompts}", "out=echo_full", "--model-name", "echo"),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DYN_TOKEN_ECHO_DELAY_MS": "0"},
    )
    # Lines failed: the exit code says so (issue 18 item 1), in one error line after the summary.
    assert result.returncode == 1, result.stderr
    assert "line 2" in result.stderr and "line 4" in result.stderr
    assert "Ran 3 prompts in" in result.stderr and "Tokens out:" in result.stderr
    assert "dynamo-run: error: 2 of 5 lines of prompts.jsonl failed" in result.stderr
    lines = [json.loads(line) for line in (tmp_path / "output.jsonl").read_text().splitlines()]
    # Results come as they finish; each says which input line it answers.
    assert sorted((r["line"], r["text"]) for r in lines) == [
        (1, "What is the capital of France?"),
        (3, "What is the capital of Spain?"),
        (5, "Bonjour"),
    ]
    for record in lines:
        assert record["response"] == record["text"]  # echo_full echoes the prompt
        assert set(record) == {
            "line",
            "text",
            "response",
            "tokens_in",
            "tokens_out",
            "elapsed_ms",
            "finish_reason",
        }
        assert record["finish_reason"] == "stop"
        assert record["tokens_out"] > 0


def test_batch_missing_file_is_one_line(tmp_path, dynamo_run_cmd):
    result = subprocess.run(
        dynamo_run_cmd(f"in=batch:{tmp_path / 'nope.jsonl'}", "out=echo_full"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot read batch file" in result.stderr


def _batch(dynamo_run_cmd, path, *engine: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        dynamo_run_cmd(f"in=batch:{path}", *(engine or ("out=echo_full", "--model-name", "e"))),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DYN_TOKEN_ECHO_DELAY_MS": "0"},
    )


def test_a_previous_output_as_input_is_not_overwritten(tmp_path, dynamo_run_cmd):
    """Issue 18 item 1: in=batch:output.jsonl replaced its own input with the results."""
    first = tmp_path / "output.jsonl"
    original = '{"text": "one", "response": "old"}\n{"text": "two", "response": "old"}\n'
    first.write_text(original)
    result = _batch(dynamo_run_cmd, first)
    assert result.returncode == 0, result.stderr
    assert first.read_text() == original
    second = tmp_path / "output.1.jsonl"
    assert sorted(json.loads(x)["response"] for x in second.read_text().splitlines()) == [
        "one",
        "two",
    ]
    assert "output.1.jsonl" in result.stderr


def test_an_existing_output_is_kept(tmp_path, dynamo_run_cmd):
    """Issue 18 item 1: an output.jsonl beside the input was overwritten without a word."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"text": "new"}\n')
    (tmp_path / "output.jsonl").write_text("precious\n")
    (tmp_path / "output.1.jsonl").write_text("also precious\n")
    result = _batch(dynamo_run_cmd, prompts)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "output.jsonl").read_text() == "precious\n"
    assert (tmp_path / "output.1.jsonl").read_text() == "also precious\n"
    [record] = [json.loads(x) for x in (tmp_path / "output.2.jsonl").read_text().splitlines()]
    assert record["response"] == "new"


def test_echo_core_batch_ignores_eos_like_text_mode(tmp_path, dynamo_run_cmd, smollm2_gguf):
    """Issue 18 item 13: echo_core echoes the templated prompt, whose first <|im_end|> ended every
    batch answer after the system prompt; text and stdin set ignore_eos, batch did not."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"text": "the batch question"}\n')
    result = _batch(dynamo_run_cmd, prompts, "out=echo_core", str(smollm2_gguf))
    assert result.returncode == 0, result.stderr
    [record] = [json.loads(x) for x in (tmp_path / "output.jsonl").read_text().splitlines()]
    assert "the batch question" in record["response"]
