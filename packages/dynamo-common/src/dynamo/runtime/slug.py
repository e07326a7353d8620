"""Upstream's `Slug::slugify`: names safe for etcd keys, NATS subjects and object-store buckets."""

from __future__ import annotations

import re

_NOT_SLUG = re.compile(r"[^a-z0-9_-]")


def slugify(name: str) -> str:
    """Lowercase; keep `[a-z0-9_-]`; everything else becomes `_`; leading `_` stripped."""
    return _NOT_SLUG.sub("_", name.lower()).lstrip("_")
