"""`dynamo.runtime.schema`: the runtime's keys, records and subjects, and their round trips."""

from __future__ import annotations

import orjson
import pytest

from dynamo.runtime.schema import (
    InstanceRecord,
    component_subject,
    instance_id_of,
    instance_key,
    instance_prefix,
    namespace_subject,
    parse_endpoint_path,
    request_subject,
)


def test_an_instance_record_round_trips_in_upstreams_shape():
    record = InstanceRecord(
        "dynamo", "backend", "generate", 0x694D9A, "dynamo_backend.generate-694d9a"
    )
    assert orjson.loads(record.dump()) == {
        "component": "backend",
        "endpoint": "generate",
        "namespace": "dynamo",
        "instance_id": 0x694D9A,
        "transport": {"nats_tcp": "dynamo_backend.generate-694d9a"},
    }
    assert InstanceRecord.parse(record.dump()) == record
    assert record.key == "instances/dynamo/backend/generate:694d9a"
    assert instance_id_of(record.key) == 0x694D9A
    assert record.key.startswith(instance_prefix("dynamo", "backend", "generate"))


def test_keys_and_subjects_are_upstreams():
    assert instance_key("ns", "comp", "ep", 255) == "instances/ns/comp/ep:ff"
    assert request_subject("My-NS", "comp", "ep", 255) == "my-ns_comp.ep-ff"
    assert component_subject("ns", "comp", "kv_events") == "namespace.ns.component.comp.kv_events"
    assert namespace_subject("ns", "kv_metrics") == "namespace.ns.kv_metrics"


@pytest.mark.parametrize(
    ("path", "fill", "expected"),
    [
        ("ns.comp.ep", False, ("ns", "comp", "ep")),
        ("dyn://ns.comp.ep", False, ("ns", "comp", "ep")),
        ("dyn://llama", True, ("llama", "backend", "generate")),
        ("dyn://llama.prefill", True, ("llama", "prefill", "generate")),
    ],
)
def test_endpoint_paths_parse(path, fill, expected):
    assert parse_endpoint_path(path, fill_defaults=fill) == expected


@pytest.mark.parametrize(
    ("path", "fill"),
    [("ns.comp", False), ("dyn://", True), ("a.b.c.d", True), ("a..c", True), ("dyn://.x", True)],
)
def test_malformed_endpoint_paths_are_refused(path, fill):
    with pytest.raises(ValueError, match=r"namespace\.component\.endpoint"):
        parse_endpoint_path(path, fill_defaults=fill)
