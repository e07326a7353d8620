"""The HTTP server's security and limit options, read and checked once from the command line.

Kept free of web imports so the command line can check them before any engine starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dynamo.frontend.flags import UsageError

if TYPE_CHECKING:
    from dynamo.frontend.run_config import RunConfig

API_KEY_ENV = "DYN_API_KEY"
DEFAULT_MAX_BODY = "8MiB"

_UNITS = {"": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2}
_UNITS |= {"g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def parse_size(text: str) -> int:
    """`"8MiB"`, `"512k"`, `"1048576"` → bytes (binary units); ValueError otherwise."""
    s = text.strip().lower()
    digits = s.rstrip("abcdefghijklmnopqrstuvwxyz ")
    unit = s[len(digits) :].strip()
    if not digits.isdigit() or unit not in _UNITS:
        raise ValueError(f"'{text}' is not a size (e.g. 8MiB, 512KiB, 1048576)")
    return int(digits) * _UNITS[unit]


def _split(values: Sequence[str] | None) -> tuple[str, ...]:
    """Repeated flags, each possibly a comma-separated list, without blanks."""
    return tuple(v.strip() for item in values or () for v in item.split(",") if v.strip())


@dataclass(frozen=True)
class HttpOptions:
    #: Accepted `Authorization: Bearer` keys; empty: no key needed.
    api_keys: tuple[str, ...] = ()
    #: Put `/metrics` behind the key too.
    protect_metrics: bool = False
    #: Origins allowed by CORS (`*` for any); empty: no CORS headers at all.
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = parse_size(DEFAULT_MAX_BODY)
    tls_cert_path: str | None = None
    tls_key_path: str | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert_path else "http"

    @classmethod
    def from_args(cls, args: RunConfig, environ: Mapping[str, str] = os.environ) -> HttpOptions:
        """From the flags (`--api-key` wins over `DYN_API_KEY`); `UsageError` for a bad one.
        Built once, with the `RunConfig` (its `http`)."""
        keys = _split(args.api_keys) or _split([environ.get(API_KEY_ENV, "")])
        if args.protect_metrics and not keys:
            raise UsageError(f"--protect-metrics needs an API key (--api-key or {API_KEY_ENV})")
        cert, key = args.tls_cert_path, args.tls_key_path
        if bool(cert) != bool(key):
            raise UsageError("--tls-cert-path and --tls-key-path go together: give both")
        for flag, path in (("--tls-cert-path", cert), ("--tls-key-path", key)):
            if path and not Path(path).is_file():
                raise UsageError(f"{flag}: no such file '{path}'")
        size = args.max_request_body_size or DEFAULT_MAX_BODY
        try:
            max_body = parse_size(size)
        except ValueError as e:
            raise UsageError(f"--max-request-body-size: {e}") from None
        if max_body <= 0:
            raise UsageError("--max-request-body-size must be more than 0")
        return cls(
            api_keys=keys,
            protect_metrics=args.protect_metrics,
            allowed_origins=_split(args.allowed_origins),
            max_body_bytes=max_body,
            tls_cert_path=cert,
            tls_key_path=key,
        )
