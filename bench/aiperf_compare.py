"""Ours against upstream Dynamo 1.6.1 as NVIDIA's `aiperf` sees them: output tokens/s, time to
first token and inter-token latency, end to end, at realistic pacing (mocker speedup 1).

aiperf lives in a virtualenv of its own (it pins its own dependencies), given as `--aiperf
PATH/TO/aiperf`; upstream's as `--upstream PYTHON` (bench/upstream.py). Each round starts each
server as bench/frontend.py's shapes do (ours: `split-tcp` by default, frontend + mocker worker;
upstream: its frontend + mocker), points aiperf at it with the same synthetic workload (the
SmolLM2 tokenizer from the HF folder bench/upstream.py writes, for both), and prints aiperf's
figures, one JSON line per run, then the medians. `--before DIR` also runs our shapes from
another tree's `packages`, as bench/frontend.py's does.

    python3 -m venv /tmp/aiperf && /tmp/aiperf/bin/pip install aiperf
    uv run python bench/aiperf_compare.py --aiperf /tmp/aiperf/bin/aiperf \\
        --upstream /path/to/upstream-venv/bin/python --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from _common import default_model
from frontend import server_under_test, shapes_of
from upstream import write_model_folder

#: aiperf's metric tags -> our names, read from its profile_export_aiperf.json.
METRICS = {
    "output_token_throughput": "output_tokens_per_s",
    "request_throughput": "requests_per_s",
    "time_to_first_token": "ttft_ms",
    "inter_token_latency": "itl_ms",
}


def run_aiperf(args: argparse.Namespace, url: str, model: str, tokenizer: Path, out: Path) -> dict:
    cmd = [
        args.aiperf,
        "profile",
        "--model",
        model,
        "--url",
        url,
        "--endpoint-type",
        "chat",
        "--streaming",
        "--tokenizer",
        str(tokenizer),
        "--concurrency",
        str(args.concurrency),
        "--request-count",
        str(args.requests),
        "--warmup-request-count",
        str(min(args.concurrency, 8)),
        "--prompt-input-tokens-mean",
        str(args.input_tokens),
        "--prompt-input-tokens-stddev",
        "0",
        "--prompt-output-tokens-mean",
        str(args.max_tokens),
        "--prompt-output-tokens-stddev",
        "0",
        "--extra-inputs",
        "ignore_eos:true",
        "--random-seed",
        "7",
        "--ui-type",
        "none",
        "--workers-max",
        str(args.aiperf_workers),
        "--output-artifact-dir",
        str(out),
    ]
    # aiperf starts a dozen service processes that must register within 30 s: not always
    # enough on a loaded 2-core machine.
    env = {"AIPERF_SERVICE_REGISTRATION_TIMEOUT": "300", **os.environ}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1200, env=env)
    exports = list(out.rglob("profile_export_aiperf.json"))
    if done.returncode != 0 or not exports:
        tail = (done.stdout + done.stderr)[-3000:]
        raise SystemExit(f"aiperf failed (exit {done.returncode}):\n{tail}")
    data = json.loads(exports[0].read_text())
    report = {}
    for tag, name in METRICS.items():
        metric = data.get(tag)
        if not isinstance(metric, dict):
            continue
        for stat in ("avg", "p50", "p99"):
            if metric.get(stat) is not None:
                report[f"{name}_{stat}" if stat != "avg" else name] = round(metric[stat], 2)
    return report


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--aiperf", required=True, help="the aiperf executable (its own venv)")
    p.add_argument("--upstream", metavar="PYTHON", help="upstream ai-dynamo 1.6.1's python")
    p.add_argument("--shapes", default="split-tcp,upstream")
    p.add_argument("--engine", default="mocker")
    p.add_argument("--model-path", default=None)
    p.add_argument("--speedup", type=float, default=1.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--requests", type=int, default=256)
    p.add_argument("--input-tokens", type=int, default=512)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--aiperf-workers", type=int, default=2, help="aiperf's --workers-max")
    p.add_argument(
        "--before", metavar="DIR", help="also measure our shapes from DIR/packages (a tree)"
    )
    args = p.parse_args()
    # server_under_test and shapes_of read these of bench/frontend.py's arguments.
    args.url, args.split, args.request_plane = None, False, None
    shapes = shapes_of(args)
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="aiperf-") as tmp:
        tokenizer = write_model_folder(args.model_path or default_model(), Path(tmp, "model"))
        for round_no in range(args.rounds):
            for shape in shapes:
                with server_under_test(args, [], shape) as (url, _, model, label):
                    out = Path(tmp, f"{shape.label}-{round_no}")
                    report = {"server": label, **run_aiperf(args, url, model, tokenizer, out)}
                report["load_average_1m"] = round(os.getloadavg()[0], 2)
                print(json.dumps(report), flush=True)
                runs.setdefault(label, []).append(report)
    for label, reports in runs.items():
        keys = [k for k in reports[0] if isinstance(reports[0][k], float | int)]
        medians = {k: statistics.median(r[k] for r in reports if k in r) for k in keys}
        print(json.dumps({"server": label, "runs": len(reports), **medians}))


if __name__ == "__main__":
    main()
