"""`lazy_exports`: a package's names import their module on first use, and only then."""

from __future__ import annotations

import sys
import types

import pytest

from dynamo.runtime.lazy_exports import lazy_exports
from dynamo.testing.imports import modules_loaded_after


def _package(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    package = types.ModuleType("lazy_pkg")
    monkeypatch.setitem(sys.modules, "lazy_pkg", package)
    package.__getattr__ = lazy_exports(  # type: ignore[attr-defined]
        "lazy_pkg", {"dumps": "json", "Path": "pathlib"}
    )
    return package


def test_a_name_is_imported_from_its_module_and_cached(monkeypatch):
    import json

    package = _package(monkeypatch)
    assert "dumps" not in vars(package)
    assert package.dumps is json.dumps
    assert vars(package)["dumps"] is json.dumps  # later reads skip __getattr__


def test_an_unknown_name_is_an_attribute_error(monkeypatch):
    package = _package(monkeypatch)
    with pytest.raises(AttributeError, match="'lazy_pkg' has no attribute 'loads'"):
        package.loads  # noqa: B018
    assert not hasattr(package, "loads")


def test_the_wire_shapes_do_not_bring_the_openai_models():
    """What a worker imports stays clear of the HTTP request models (start-up time)."""
    loaded = modules_loaded_after("import dynamo.llm.protocols.wire")
    assert "dynamo.llm.protocols.wire" in loaded
    assert "dynamo.llm.protocols.openai" not in loaded


def test_the_package_still_exports_every_name():
    import dynamo.llm.protocols as protocols

    for name in protocols.__all__:
        assert getattr(protocols, name).__name__ == name
