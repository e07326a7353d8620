"""What a discovery watch reports (etcd's or the file backend's), in a module of its own so the
file backend needs no etcd client."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A key appeared or changed (`put`) or went away (`delete`)."""

    kind: str
    key: str
    value: bytes
