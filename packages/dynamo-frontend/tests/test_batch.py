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
    assert result.returncode == 0, result.stderr
    assert "line 2" in result.stderr and "line 4" in result.stderr
    assert "Ran 3 prompts in" in result.stderr and "Tokens out:" in result.stderr
    lines = [json.loads(line) for line in (tmp_path / "output.jsonl").read_text().splitlines()]
    assert sorted(r["text"] for r in lines) == [
        "Bonjour",
        "What is the capital of France?",
        "What is the capital of Spain?",
    ]
    for record in lines:
        assert record["response"] == record["text"]  # echo_full echoes the prompt
        assert set(record) == {
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
