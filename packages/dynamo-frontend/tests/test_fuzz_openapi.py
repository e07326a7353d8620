"""The HTTP API fuzzed from its own OpenAPI schema (issue 16 item 8): `bench/drills.py fuzz`
(schemathesis against `dynamo-run in=http out=mocker`, every route, valid and invalid requests)
for a short time budget. The same assertions as the drill's longer run in docs/reliability.md:
no answer is a 5xx, every request gets an answer within the request timeout, the server lives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DRILLS = Path(__file__).parents[3] / "bench" / "drills.py"


def test_fuzzing_the_openapi_schema_finds_no_5xx_and_no_hang():
    run = subprocess.run(
        [sys.executable, str(DRILLS), "fuzz", "--seconds", "40", "--request-timeout", "10"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["server_errors"] == 0, report["server_error_examples"]
    assert report["no_answer"] == 0, report
    assert report["server_alive_after"], report
    # The requests reached the pipeline: the served model's name was pinned in the schema, and
    # some requests were valid enough to be answered.
    assert report["model_fields_pinned"] >= 5, report
    assert report["status_classes"].get("2xx", 0) > 10, report
    assert report["responses"] > 100, report
