"""`DYN_LOG` (RUST_LOG syntax) mapped onto Python logging.

`DYN_LOG=info`, `DYN_LOG=dynamo.runtime=debug,warn`, `DYN_LOG=dynamo_runtime::etcd=trace`: a bare
level sets the root; `target=level` sets that logger (`::` and `dynamo_` spellings map onto our
dotted module names). `-v` / `-vv` raise the default to debug / trace.
"""

from __future__ import annotations

import logging
import os
import sys

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}

# Libraries that are chatty at debug level and never what a user debugging Dynamo wants.
_QUIET = ("asyncio", "httpx", "httpcore", "urllib3", "filelock", "huggingface_hub", "nats", "grpc")


def _logger_name(target: str) -> str:
    name = target.strip().replace("::", ".").replace("-", "_")
    if name.startswith("dynamo_") and not name.startswith("dynamo_py"):
        name = "dynamo." + name[len("dynamo_") :]
    return name


def parse_dyn_log(spec: str, default: int = logging.INFO) -> tuple[int, dict[str, int]]:
    """(root level, {logger: level}) from a RUST_LOG-style spec; unknown words are ignored."""
    root, per = default, {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if "=" in part:
            target, _, level = part.partition("=")
            if level.strip().lower() in _LEVELS:
                per[_logger_name(target)] = _LEVELS[level.strip().lower()]
        elif part.lower() in _LEVELS:
            root = _LEVELS[part.lower()]
    return root, per


class StderrHandler(logging.StreamHandler):
    """A handler on the `sys.stderr` of the moment, not the one at set-up: a stderr replaced
    later (pytest's capture around an in-process run, a daemon's redirect) must not leave the
    root logger writing to a closed stream ("I/O operation on closed file" on every record)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # StreamHandler's attribute, looked up at each write
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ and setStream assign it
        pass


def setup_logging(verbosity: int = 0) -> None:
    default = {0: logging.INFO, 1: logging.DEBUG}.get(verbosity, TRACE)
    root_level, per = parse_dyn_log(os.environ.get("DYN_LOG", ""), default)
    if verbosity:
        root_level = min(root_level, default)
    handler = StderrHandler()
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s.%(msecs)03d %(levelname)5s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(root_level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(root_level, logging.WARNING))
    for name, level in per.items():
        logging.getLogger(name).setLevel(level)
