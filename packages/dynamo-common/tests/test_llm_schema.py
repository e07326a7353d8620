"""`dynamo.llm.schema`: model entries, card records and KV subjects, and their round trips."""

from __future__ import annotations

import orjson
import pytest

from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.model_type import ModelType
from dynamo.llm.schema import (
    ModelEntry,
    card_key,
    card_record,
    instance_id_of_model_entry,
    kv_events_subject,
    kv_metrics_subject,
    model_entry_key,
    parse_card_record,
)


def test_a_backend_entry_is_upstreams_shape_and_round_trips():
    entry = ModelEntry.for_endpoint("smol", "ns.backend.generate", ModelType.Backend, "mdc/smol")
    assert orjson.loads(entry.dump()) == {
        "name": "smol",
        "endpoint": {"namespace": "ns", "component": "backend", "name": "generate"},
        "model_type": "backend",
        "mdc": "mdc/smol",
    }
    assert ModelEntry.parse(entry.dump()) == ModelEntry(
        "smol", "ns", "backend", "generate", ModelType.Backend, "mdc/smol", None
    )
    assert entry.serves() == {ModelType.Backend}


def test_a_chat_entry_publishes_what_else_it_serves():
    both = ModelEntry.for_endpoint(
        "echo", "ns.c.e", ModelType.Chat, "mdc/echo", frozenset({ModelType.Completion})
    )
    assert orjson.loads(both.dump())["also_serves"] == ["completion"]
    assert ModelEntry.parse(both.dump()) == both
    assert both.serves() == {ModelType.Chat, ModelType.Completion}
    chat_only = ModelEntry.for_endpoint("c", "ns.c.e", ModelType.Chat, "mdc/c")
    assert orjson.loads(chat_only.dump())["also_serves"] == []
    assert ModelEntry.parse(chat_only.dump()).serves() == {ModelType.Chat}


def test_aliases_are_published_only_when_there_are_some():
    entry = ModelEntry.for_endpoint("a", "ns.c.e", ModelType.Chat, "mdc/a", aliases=("b", "c"))
    assert orjson.loads(entry.dump())["aliases"] == ["b", "c"]
    assert ModelEntry.parse(entry.dump()) == entry
    plain = ModelEntry.for_endpoint("a", "ns.c.e", ModelType.Backend, "mdc/a")
    assert "aliases" not in orjson.loads(plain.dump())
    assert ModelEntry.parse(plain.dump()).aliases == ()
    bad = orjson.loads(entry.dump()) | {"aliases": ["b", ""]}
    with pytest.raises(ValueError, match="aliases must be non-empty names"):
        ModelEntry.parse(orjson.dumps(bad))


def test_an_upstream_chat_entry_without_also_serves_takes_completions_too():
    upstream = orjson.dumps(
        {
            "name": "m",
            "endpoint": {"namespace": "ns", "component": "c", "name": "e"},
            "model_type": "chat",
        }
    )
    entry = ModelEntry.parse(upstream)
    assert entry.mdc == card_key("m")
    assert entry.serves() == {ModelType.Chat, ModelType.Completion}


def test_keys_and_subjects():
    assert model_entry_key("ns.backend.generate", 0xAB) == "models/ns_backend_generate-ab"
    # The entry names its worker instance, so a model's requests go only to its own workers.
    assert instance_id_of_model_entry(model_entry_key("my-ns.back-end.gen", 0x7F3A)) == 0x7F3A
    assert instance_id_of_model_entry("models/not_ours") is None
    assert card_key("smol") == "mdc/smol"
    assert kv_events_subject("ns", "backend") == "namespace.ns.component.backend.kv_events"
    assert kv_metrics_subject("ns") == "namespace.ns.kv_metrics"


def test_a_card_record_round_trips_with_its_files_apart():
    card = ModelDeploymentCard(display_name="smol", tokenizer_json='{"big": true}')
    record = card_record(card.to_json(), "smol", ["tokenizer.json"])
    fields, files = parse_card_record(record)
    assert fields["tokenizer_json"] is None
    assert files == {"tokenizer.json": ("smol", "tokenizer.json")}
    fields["tokenizer_json"] = card.tokenizer_json  # what the object store gives back
    assert ModelDeploymentCard.from_json(orjson.dumps(fields)) == card
