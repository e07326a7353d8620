"""Every package of the workspace ships `py.typed`, so type checkers read our hints (PEP 561)."""

from __future__ import annotations

from pathlib import Path

PACKAGES = Path(__file__).parents[2]


def test_every_package_is_marked_typed():
    packages = [
        init.parent
        for init in PACKAGES.glob("*/src/dynamo/**/__init__.py")
        if init.parent.name != "dynamo" and init.parent.parent.name in ("dynamo", "engines")
    ]
    assert len(packages) >= 4
    assert [p for p in packages if not (p / "py.typed").is_file()] == []
