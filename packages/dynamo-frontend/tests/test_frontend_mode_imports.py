"""`in=http out=dyn` loads the KV routing package only for `--router-mode kv` (issue 14's
start-up: it was a few percent of a frontend's start, for a router the other modes never make)."""

from __future__ import annotations

from dynamo.testing.imports import modules_loaded_after


def test_the_discovering_mode_imports_no_kv_package():
    loaded = modules_loaded_after("import dynamo.frontend.modes.frontend")
    assert "dynamo.frontend.modes.frontend" in loaded
    assert not {m for m in loaded if m == "dynamo.llm.kv" or m.startswith("dynamo.llm.kv.")}
