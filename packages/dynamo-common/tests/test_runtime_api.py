"""The runtime's public names and upstream's call shapes, which user code written for upstream's
Python bindings relies on."""

from __future__ import annotations

import asyncio
import inspect

import pytest

import dynamo.runtime
from dynamo.llm import ModelType, register_llm
from dynamo.runtime import Client, DistributedRuntime, Endpoint, dynamo_worker


def test_exported_names():
    assert sorted(dynamo.runtime.__all__) == [
        "Client",
        "Component",
        "Context",
        "DistributedRuntime",
        "DynamoRuntimeError",
        "Endpoint",
        "InstanceGoneError",
        "Namespace",
        "NoInstancesError",
        "RemoteError",
        "RequestPlaneDownError",
        "RuntimeConfig",
        "dynamo_worker",
    ]
    for name in dynamo.runtime.__all__:
        assert getattr(dynamo.runtime, name).__doc__, f"{name} has no docstring"


def test_upstream_call_shapes():
    assert list(inspect.signature(DistributedRuntime).parameters)[:2] == ["loop", "is_static"]
    assert inspect.signature(dynamo_worker).parameters["static"].default is False
    serve = inspect.signature(Endpoint.serve_endpoint).parameters
    assert list(serve)[1:3] == ["handler", "graceful_shutdown"]
    assert serve["graceful_shutdown"].default is True
    assert inspect.iscoroutinefunction(Endpoint.client)
    assert not inspect.iscoroutinefunction(Endpoint.lease_id)
    for method in ("random", "round_robin", "generate"):
        assert list(inspect.signature(getattr(Client, method)).parameters)[1] == "request"
    assert list(inspect.signature(Client.direct).parameters)[1:3] == ["request", "instance_id"]
    assert inspect.iscoroutinefunction(Client.wait_for_instances)
    assert list(inspect.signature(register_llm).parameters)[:7] == [
        "model_type",
        "endpoint",
        "model_path",
        "model_name",
        "context_length",
        "kv_cache_block_size",
        "migration_limit",
    ]
    assert ModelType.Backend and ModelType.Chat and ModelType.Completion


async def test_upstreams_loop_is_the_running_one_and_static_mode_is_refused():
    DistributedRuntime(asyncio.get_running_loop())  # what dynamo_worker passes
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="running event loop"):
            DistributedRuntime(other)
    finally:
        other.close()
    with pytest.raises(ValueError, match="is_static=True"):
        DistributedRuntime(is_static=True)


async def test_upstream_parameters_we_do_not_implement_are_refused():
    """Issue 10 item 6: accepted and ignored before; now each says it is not supported, before
    anything connects (upstream's workers pass none of them by default)."""
    from dynamo.llm.kv.metrics_publisher import WorkerMetricsPublisher

    runtime = DistributedRuntime()
    endpoint = runtime.namespace("ns").component("comp").endpoint("ep")

    async def handler(request):
        yield request

    with pytest.raises(ValueError, match="metrics_labels"):
        await endpoint.serve_endpoint(handler, metrics_labels=[("model", "m")])
    with pytest.raises(ValueError, match="health_check_payload"):
        await endpoint.serve_endpoint(handler, health_check_payload={"prompt": "hi"})
    with pytest.raises(ValueError, match="router_mode"):
        await register_llm(ModelType.Backend, endpoint, None, "m", router_mode="kv")
    with pytest.raises(ValueError, match="metrics_labels"):
        await WorkerMetricsPublisher().create_endpoint(endpoint.component, [("model", "m")])
