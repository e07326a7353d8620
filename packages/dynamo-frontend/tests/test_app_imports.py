"""Building the HTTP app loads only what serving needs (issue 14's start-up): not FastAPI (nor
the pydantic.v1 it imports), and the Anthropic family only under `--enable-anthropic-api`."""

from __future__ import annotations

from dynamo.testing.imports import modules_loaded_after

BUILD = "from dynamo.frontend.http.app import AppState, build_app\nbuild_app(AppState({}))"


def test_building_the_app_imports_no_fastapi_and_no_anthropic_family():
    loaded = modules_loaded_after(BUILD.format(""))
    assert "starlette.applications" in loaded
    assert not {m for m in loaded if m == "fastapi" or m.startswith("fastapi.")}
    assert "pydantic.v1" not in loaded
    assert "dynamo.frontend.http.anthropic" not in loaded


def test_the_anthropic_family_loads_with_its_flag():
    loaded = modules_loaded_after(BUILD.format("anthropic_api=True"))
    assert "dynamo.frontend.http.anthropic.protocol" in loaded
