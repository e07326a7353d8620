"""The `dynamo-run` command line: `dynamo-run [in=…] [out=…] [MODEL] [flags]`.

This module spells the flags (`build_parser`) and splits `in=`/`out=` off the line;
`dynamo.frontend.run_config` turns the result into the one frozen `RunConfig` and says in which
modes each flag applies."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from dynamo.llm.parsers import REASONING_PARSERS, TOOL_CALL_PARSERS

if TYPE_CHECKING:
    from dynamo.frontend.run_config import RunConfig

USAGE = "dynamo-run [in=INPUT] [out=ENGINE] [MODEL] [flags]"

DESCRIPTION = """\
Serve an LLM: join an input to an engine.

inputs (in=):
  text              interactive chat (the default at a terminal)
  stdin             one prompt read from stdin, answer to stdout (default otherwise)
  http              OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions, ...)
  batch:FILE.jsonl  run every {"text": ...} line, write output.jsonl beside it
  dyn://ns.comp.ep  serve the engine as a distributed worker (needs etcd and NATS)

engines (out=):
  mistralrs, llamacpp, vllm, sglang, trtllm, mocker   real or simulated engines
  echo_core, echo_full                                test engines
  dyn                                                 route to workers found in etcd

MODEL is an HF repo id (optionally hf://), a local HF folder, or a GGUF file.
"""

EPILOG = """\
examples:
  dynamo-run in=http out=echo_full --model-name echo
  dynamo-run in=http out=llamacpp ./SmolLM2-135M-Instruct.Q4_1.gguf
  dynamo-run in=dyn://llama.backend.generate out=llamacpp model.gguf
  dynamo-run in=http out=dyn --router-mode kv

A flag that means nothing with the chosen in= and out= is refused (exit 2), e.g. --http-port
without in=http, --router-mode without out=dyn, the engine's flags with out=dyn.

environment: DYN_LOG (RUST_LOG syntax), DYN_TOKEN_ECHO_DELAY_MS, ETCD_ENDPOINTS, NATS_SERVER,
HF_TOKEN, HF_HUB_OFFLINE.
"""


class UsageError(Exception):
    """A mistake in the command line: printed as one line, exit code 2."""


def _int_at_least(low: int, what: str):
    """An argparse `type` for integers of at least `low`: a bad value is one usage line."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{value}' is not a whole number") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"{value} is not {what}")
        return number

    return parse


positive_int = _int_at_least(1, "a positive number")
non_negative_int = _int_at_least(0, "zero or more")


def tcp_port(value: str) -> int:
    """A TCP port, 0 (any free port) to 65535; the OS would otherwise wrap 99999 silently."""
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"'{value}' is not a TCP port (0 to 65535)")
    return port


def build_parser(prog: str = "dynamo-run") -> argparse.ArgumentParser:
    """The flags. No flag has an argparse default: the namespace holds only what was typed
    (`RunConfig.explicit`), and the defaults live in one place, `RunConfig`'s fields."""
    p = argparse.ArgumentParser(
        prog=prog,
        usage=USAGE,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("model", nargs="?", help="model: HF repo id, HF folder, or GGUF file")
    m = p.add_argument_group("model")
    m.add_argument("--model-path", help="same as the positional MODEL")
    m.add_argument("--model-name", help="name to serve the model as (default: from the model path)")
    m.add_argument(
        "--served-model-name",
        nargs="+",
        metavar="NAME",
        help="names to serve the model as (in=http, or in=dyn:// for its frontends); the first "
        "is its id in responses and /v1/models, the others are aliases (vLLM's flag; instead of "
        "--model-name)",
    )
    m.add_argument(
        "--chat-template",
        metavar="FILE",
        help="a Jinja chat template file to use instead of the model's own",
    )
    m.add_argument(
        "--embedding",
        action="store_true",
        help="serve the model for POST /v1/embeddings (model type Embedding) instead of "
        "generating text",
    )
    m.add_argument("--model-config", help="HF folder with tokenizer and template, for a GGUF file")
    m.add_argument(
        "--tool-call-parser",
        choices=sorted(TOOL_CALL_PARSERS),
        help="how the model writes tool calls, to return them as tool_calls (default: from the "
        "chat template's markup where it is unambiguous; without one, requests with tools get a "
        "400)",
    )
    m.add_argument(
        "--reasoning-parser",
        choices=sorted(REASONING_PARSERS),
        help="split <think> reasoning out of chat answers into reasoning_content",
    )
    m.add_argument(
        "--context-length", type=positive_int, help="max context in tokens (default: the model's)"
    )
    m.add_argument(
        "--kv-cache-block-size",
        type=positive_int,
        help="KV cache block size in tokens (default 16)",
    )
    m.add_argument("--extra-engine-args", help="engine options: a JSON file or inline JSON")
    m.add_argument(
        "--request-template", help="JSON file with default model, temperature, max tokens"
    )
    g = p.add_argument_group("parallelism")
    g.add_argument(
        "--tensor-parallel-size", type=positive_int, help="GPUs to shard the model over (default 1)"
    )
    g.add_argument("--base-gpu-id", type=non_negative_int, help="first GPU to use (default 0)")
    g.add_argument(
        "--num-nodes", type=positive_int, help="nodes in a multi-node engine (default 1)"
    )
    g.add_argument("--node-rank", type=non_negative_int, help="this node's rank (default 0)")
    g.add_argument("--leader-addr", help="leader node host:port for multi-node engines")
    h = p.add_argument_group("serving")
    h.add_argument("--http-host", help="HTTP bind address (default 0.0.0.0)")
    h.add_argument("--http-port", type=tcp_port, help="HTTP port (default 8080)")
    h.add_argument(
        "--http-workers",
        type=positive_int,
        metavar="N",
        help="in=http out=dyn: serve the port from N processes, each with its own routers fed "
        "from the same discovery and events, so the frontend uses N cores (default 1)",
    )
    h.add_argument(
        "--enable-anthropic-api",
        action="store_true",
        help="also serve Anthropic Messages at POST /v1/messages (in=http)",
    )
    s = p.add_argument_group("HTTP security and limits (in=http)")
    s.add_argument(
        "--api-key",
        dest="api_keys",
        action="append",
        metavar="KEY",
        help="require 'Authorization: Bearer KEY' on every route but /health, /live and "
        "/metrics; repeat (or separate with commas) for several keys (default: $DYN_API_KEY)",
    )
    s.add_argument(
        "--protect-metrics", action="store_true", help="require the API key on /metrics too"
    )
    s.add_argument("--tls-cert-path", metavar="PEM", help="serve HTTPS with this certificate")
    s.add_argument("--tls-key-path", metavar="PEM", help="the private key of --tls-cert-path")
    s.add_argument(
        "--allowed-origins",
        action="append",
        metavar="ORIGIN",
        help="allow browser requests (CORS) from these origins, '*' for any; repeatable or "
        "comma-separated (default: CORS off)",
    )
    s.add_argument(
        "--max-request-body-size",
        metavar="SIZE",
        help="largest request body, e.g. 512KiB, 8MiB (default 8MiB): 413 beyond",
    )
    s.add_argument(
        "--max-concurrent-requests",
        type=int,
        metavar="N",
        help="requests per model in the engine at once; more wait in a FIFO queue (default: "
        "what the engines publish as max_num_seqs, else no limit)",
    )
    s.add_argument(
        "--queue-size",
        type=int,
        metavar="M",
        help="requests per model waiting for a slot; beyond: 429 with Retry-After (default 100)",
    )
    s.add_argument(
        "--queue-timeout",
        type=float,
        metavar="S",
        help="seconds a request may wait for a slot; then 503 with Retry-After (default: no limit)",
    )
    s.add_argument(
        "--request-timeout",
        type=float,
        metavar="S",
        help="seconds a whole request may take; then the engine stops and the client gets a 504 "
        "(default: no limit)",
    )
    h.add_argument(
        "--router-mode",
        choices=["round-robin", "random", "least-loaded", "power-of-two", "kv"],
        help="how out=dyn picks a worker: round-robin (each in turn), random, least-loaded "
        "(the fewest requests in flight from this frontend), power-of-two (two at random, the "
        "one with fewer in flight), kv (the worker predicted to answer first, from the "
        "workers' KV events and load: see --router-cost) (default round-robin)",
    )
    h.add_argument(
        "--router-cost",
        choices=["predicted", "blocks"],
        help="KV router: predicted (each worker's time to first token: the prefill queued on "
        "it plus this prompt's uncached tokens, at the prefill rate learned from the first "
        "tokens seen, plus its decode load) or blocks (upstream's: weight x prefill blocks + "
        "active blocks) (default predicted)",
    )
    h.add_argument(
        "--migration-limit",
        type=non_negative_int,
        help="times a stream whose worker is lost resumes on another worker: on a worker "
        "(in=dyn://) it goes on the model's card; on out=dyn it overrides the cards' (default 0)",
    )
    h.add_argument(
        "--request-plane",
        choices=["tcp", "nats"],
        help="in=dyn://: how the worker takes requests (its instance record says so; out=dyn "
        "reaches each worker by its own record); the same as DYN_REQUEST_PLANE "
        "(default: DYN_REQUEST_PLANE, else tcp)",
    )
    h.add_argument(
        "--discovery-backend",
        choices=["etcd", "file"],
        help="in=dyn:// and out=dyn: where workers and models are announced: etcd, or a "
        "directory on this host (DYN_FILE_KV) for one-host deployments with nothing else "
        "installed; the same as DYN_DISCOVERY_BACKEND (default: it, else etcd)",
    )
    h.add_argument(
        "--kv-overlap-score-weight",
        type=float,
        help="KV router: weight of prefill cost (default 1.0)",
    )
    h.add_argument(
        "--router-temperature",
        type=float,
        help="KV router: softmax temperature, 0 = best (default 0)",
    )
    h.add_argument(
        "--kv-index-max-blocks",
        type=positive_int,
        metavar="N",
        help="KV router: most (worker, block) entries its index keeps; the least recently "
        "announced go first beyond it (default 1000000, about 200 MB)",
    )
    h.add_argument(
        "--batch-concurrency",
        type=positive_int,
        help="in=batch: prompts in flight at once (default 16)",
    )
    p.add_argument("-v", "--verbose", action="count", help="-v debug, -vv trace logging")
    return p


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each field as the user spells it (`http_port` -> `--http-port`; the model: MODEL)."""
    names = {a.dest: max(a.option_strings, key=len) for a in parser._actions if a.option_strings}
    names["model_path"] = "MODEL (--model-path)"
    return names


def parse_command_line(argv: list[str], prog: str = "dynamo-run") -> RunConfig:
    """Split off `in=` / `out=` (anywhere on the line), parse the flags, and build the checked
    `RunConfig` (`UsageError` for the first problem; argparse exits 2 on a malformed flag)."""
    from dynamo.frontend.run_config import build_run_config

    inp: str | None = None
    out: str | None = None
    rest: list[str] = []
    for a in argv:
        if a.startswith("in="):
            if inp is not None:
                raise UsageError(f"in= given twice ('in={inp}' and '{a}'): give one input")
            inp = a[3:]
        elif a.startswith("out="):
            if out is not None:
                raise UsageError(f"out= given twice ('out={out}' and '{a}'): give one engine")
            out = a[4:]
        else:
            rest.append(a)
    parser = build_parser(prog)
    typed = vars(parser.parse_args(rest))
    if inp is None:
        inp = "text" if sys.stdin.isatty() else "stdin"
    if not inp:
        raise UsageError("in= needs a value: text, stdin, http, batch:FILE or dyn://ns.comp.ep")
    if out == "":
        raise UsageError("out= needs an engine name")
    if out is not None and out.startswith("dyn://"):
        out = "dyn"  # the old spelling of the discovering frontend
    return build_run_config(inp, out, typed, flag_names(parser))


def parse_dyn_path(path: str) -> tuple[str, str, str]:
    """`dyn://ns.comp.ep` → (ns, comp, ep); missing parts default to `dynamo.backend.generate`."""
    body = path.removeprefix("dyn://")
    parts = [p for p in body.split(".") if p]
    if len(parts) > 3 or not parts:
        raise UsageError(f"bad endpoint '{path}': expected dyn://namespace.component.endpoint")
    defaults = ["dynamo", "backend", "generate"]
    if len(parts) == 1:
        return parts[0], defaults[1], defaults[2]
    if len(parts) == 2:
        return parts[0], parts[1], defaults[2]
    return parts[0], parts[1], parts[2]
