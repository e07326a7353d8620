"""Start-up (issue 14 item 5): a process that never talks to etcd or NATS does not load their
clients, and `dynamo.runtime`'s names still resolve."""

from __future__ import annotations

import pytest

import dynamo.runtime
from dynamo.testing.imports import modules_loaded_after


def test_the_context_and_the_engine_api_load_no_control_plane_client():
    loaded = modules_loaded_after("import dynamo.runtime.context, dynamo.llm.engine")
    assert not loaded & {"nats", "aetcd", "grpc"}


def test_the_runtime_s_names_load_on_first_use():
    assert dynamo.runtime.DistributedRuntime.__module__ == "dynamo.runtime.distributed"
    assert dynamo.runtime.Context.__module__ == "dynamo.runtime.context"
    loaded = modules_loaded_after("from dynamo.runtime import DistributedRuntime")
    assert "dynamo.runtime.distributed" in loaded
    with pytest.raises(AttributeError, match="NoSuchThing"):
        dynamo.runtime.NoSuchThing  # noqa: B018
