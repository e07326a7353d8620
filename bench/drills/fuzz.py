"""`fuzz`: schemathesis drives the HTTP API from its own OpenAPI schema: no 5xx, no hang."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import default_model, http_get, start_dynamo_run, stop

from .cluster import MODEL


def pin_model_names(schema: Any, names: list[str]) -> int:
    """Make every request field and path parameter that names a model an enum of the served
    ones, so that generated requests reach the pipeline instead of a 404 for an unknown model.
    Returns how many it pinned."""
    pinned = 0
    if isinstance(schema, dict):
        props = schema.get("properties")
        if isinstance(props, dict) and props.get("model", {}).get("type") == "string":
            props["model"] = {"type": "string", "enum": names}
            pinned += 1
        if schema.get("in") == "path" and schema.get("name") == "model_id":
            schema["schema"] = {"type": "string", "enum": names}
            pinned += 1
        return pinned + sum(pin_model_names(v, names) for v in schema.values())
    if isinstance(schema, list):
        return sum(pin_model_names(v, names) for v in schema)
    return 0


def fuzz_report(ndjson: Path) -> dict[str, object]:
    """What schemathesis's NDJSON report says the server answered: status classes, 5xx, the
    requests that got no answer (a hang past --request-timeout, or a dropped connection), and
    the slowest answer."""
    classes: Counter[str] = Counter()
    server_errors: list[str] = []
    no_answer = 0
    slowest = 0.0
    for line in ndjson.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if finished is None:
            continue
        for interaction in (finished.get("recorder") or {}).get("interactions", {}).values():
            response = interaction.get("response")
            if response is None:
                no_answer += 1
                continue
            status = response["status_code"]
            classes[f"{status // 100}xx"] += 1
            slowest = max(slowest, response.get("elapsed") or 0.0)
            if status >= 500:
                request = interaction["request"]
                body = request.get("body") or {}
                sent = base64.b64decode(body["$base64"]).decode(errors="replace") if body else ""
                server_errors.append(f"{status} {request['method']} {request['uri']} {sent[:300]}")
    return {
        "responses": sum(classes.values()),
        "status_classes": dict(sorted(classes.items())),
        "server_errors": len(server_errors),
        "server_error_examples": server_errors[:5],
        "no_answer": no_answer,
        "slowest_s": round(slowest, 3),
    }


def run_schemathesis(url: str, schema: Any, args: argparse.Namespace) -> dict[str, object]:
    """`st run` over `schema` against `url` for `--seconds`; its report, summarized."""
    with tempfile.TemporaryDirectory(prefix="dynamo-fuzz-") as tmp:
        path = Path(tmp) / "openapi.json"
        path.write_text(json.dumps(schema))
        st = Path(sys.executable).parent / "st"
        cmd = [str(st), "run", str(path), "--url", url, "--checks", "not_a_server_error"]
        cmd += ["--max-time", str(args.seconds), "--workers", str(args.clients)]
        cmd += ["--request-timeout", str(args.request_timeout), "--report", "ndjson"]
        cmd += ["--report-dir", tmp, "--no-color", "--suppress-health-check", "all"]
        if args.seed is not None:
            cmd += ["--seed", str(args.seed)]
        started = time.monotonic()
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds + 300)
        took = time.monotonic() - started
        reports = list(Path(tmp).glob("*.ndjson"))
        if not reports:
            raise RuntimeError(f"schemathesis wrote no report:\n{run.stdout}\n{run.stderr}")
        return {
            **fuzz_report(reports[0]),
            "schemathesis_exit_code": run.returncode,
            "seed": next(
                (ln.split()[-1] for ln in run.stdout.splitlines() if ln.startswith("Seed:")), None
            ),
            "schemathesis_summary": [
                ln.strip() for ln in run.stdout.splitlines() if "generated" in ln
            ][-1:],
            "took_s": round(took, 1),
        }


async def drill_fuzz(args: argparse.Namespace) -> dict[str, object]:
    """schemathesis generates requests from the served /openapi.json (model names pinned to the
    served one) for `--seconds`, every route, valid and invalid: the server must answer each
    within `--request-timeout`, never with a 5xx."""
    flags = ["--enable-anthropic-api", "--extra-engine-args", json.dumps({"speedup_ratio": 0})]
    proc, url = start_dynamo_run("mocker", default_model(), flags, model_name=MODEL)
    try:
        schema = json.loads(http_get(f"{url}/openapi.json", timeout=10) or b"{}")
        pinned = pin_model_names(schema, [MODEL])
        report = await asyncio.to_thread(run_schemathesis, url, schema, args)
        alive = proc.poll() is None
    finally:
        stop([proc])
    return {"model_fields_pinned": pinned, **report, "server_alive_after": alive}
