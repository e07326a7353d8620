"""`register_llm`: the model entry, the card in etcd and its files in the NATS object store."""

from __future__ import annotations

import orjson
import pytest

from dynamo.llm import ModelType, register_llm
from dynamo.runtime.slug import slugify

pytestmark = pytest.mark.integration


async def test_register_publishes_entry_card_and_files(runtime, smollm2_gguf, smollm2_card):
    endpoint = runtime.namespace("reg").component("backend").endpoint("generate")
    card = await register_llm(
        ModelType.Backend, endpoint, str(smollm2_gguf), "smol", kv_cache_block_size=32
    )
    lease = await runtime.primary_lease()
    assert card.display_name == "smol" and card.kv_cache_block_size == 32

    entries = await runtime.etcd.get_prefix("models/")
    key = f"models/{slugify(f'reg.backend.generate-{lease:x}')}"
    assert orjson.loads(entries[key]) == {
        "name": "smol",
        "endpoint": {"namespace": "reg", "component": "backend", "name": "generate"},
        "model_type": "backend",
        "mdc": "mdc/smol",
    }
    stored = orjson.loads(await runtime.etcd.get("mdc/smol"))
    assert stored["tokenizer_json"] is None  # too big for etcd: it is in the object store
    assert stored["chat_template"] == smollm2_card.chat_template
    assert stored["eos_token_ids"] == smollm2_card.eos_token_ids
    assert stored["files"]["tokenizer.json"] == "nats://smol/tokenizer.json"

    store = await runtime.nats.jetstream().object_store("smol")
    for name, data in card.files().items():
        assert (await store.get(name)).data == data

    # Revoking the lease (what a worker's shutdown does) takes the entry and the card along.
    await runtime.etcd.close(revoke=True)
    reader = type(runtime)()
    await reader.ensure_connected()
    try:
        assert await reader.etcd.get_prefix("models/") == {}
        assert await reader.etcd.get("mdc/smol") is None
    finally:
        await reader.close()


async def test_register_takes_an_already_loaded_card(runtime, smollm2_card):
    endpoint = runtime.namespace("reg2").component("backend").endpoint("generate")
    card = await register_llm(
        "chat", endpoint, None, card=smollm2_card, migration_limit=2, user_data={"a": 1}
    )
    assert card.migration_limit == 2 and smollm2_card.migration_limit == 0  # a copy
    stored = orjson.loads(await runtime.etcd.get(f"mdc/{smollm2_card.service_name}"))
    assert stored["migration_limit"] == 2 and stored["user_data"] == {"a": 1}
    entry = next(iter((await runtime.etcd.get_prefix("models/")).values()))
    assert orjson.loads(entry)["model_type"] == "chat"


async def test_register_without_a_model_needs_a_name(runtime):
    endpoint = runtime.namespace("reg3").component("backend").endpoint("generate")
    with pytest.raises(ValueError, match="model_path or a model_name"):
        await register_llm(ModelType.Chat, endpoint, None)
    card = await register_llm(ModelType.Chat, endpoint, None, "echo")
    assert card.display_name == "echo" and card.files() == {}
