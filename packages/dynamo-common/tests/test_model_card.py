"""The model deployment card: built from a GGUF, an HF folder or both, and carried as JSON or files."""

from __future__ import annotations

import json

import pytest

from dynamo.llm.errors import ModelPathError
from dynamo.llm.model_card import ModelDeploymentCard, load_card


def write_hf_folder(folder, card: ModelDeploymentCard, *, max_pos: int = 2048) -> None:
    """An HF-style folder from a card's files, with configs set the way the tests need them."""
    folder.mkdir()
    for name, data in card.files().items():
        (folder / name).write_bytes(data)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.update(
        eos_token="<|im_end|>",
        bos_token={"content": "<|im_start|>"},
        model_max_length=1_000_000_000_000,
    )
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "config.json").write_text(
        json.dumps({"max_position_embeddings": max_pos, "eos_token_id": 0})
    )
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 7]}))


def edit_json(path, **changes) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def test_gguf_card(smollm2_card, smollm2_gguf):
    card = smollm2_card
    assert card.display_name == "SmolLM2-135M-Instruct.Q4_1"
    assert card.service_name == "smollm2-135m-instruct_q4_1"
    assert card.context_length == 8192
    assert card.eos_token_ids == [2]
    assert (card.bos_token, card.eos_token, card.pad_token) == (
        "<|im_start|>",
        "<|im_end|>",
        "<|im_end|>",
    )
    assert card.source_path == str(smollm2_gguf)
    assert card.kv_cache_block_size == 16 and card.migration_limit == 0
    assert card.tokenizer().encode("Hello world").ids == [19556, 905]
    assert card.tokenizer() is card.tokenizer()  # built once


def test_json_round_trip_keeps_everything(smollm2_card):
    card = ModelDeploymentCard.from_json(smollm2_card.to_json())
    card.user_data = {"owner": "tests"}
    card.runtime_config = {"total_kv_blocks": 100}
    again = ModelDeploymentCard.from_json(card.to_json())
    assert again == card
    assert again.to_json() == card.to_json()
    assert again.mdcsum() == card.mdcsum() and len(again.mdcsum()) == 64
    assert again.tokenizer().encode("héllo 🤖").ids == card.tokenizer().encode("héllo 🤖").ids
    again.kv_cache_block_size = 32
    assert again.mdcsum() != card.mdcsum()


def test_from_json_ignores_fields_it_does_not_know(smollm2_card):
    data = json.loads(smollm2_card.to_json())
    data["from_a_newer_version"] = 1
    assert ModelDeploymentCard.from_json(json.dumps(data)) == smollm2_card


def test_files_load_back_into_the_same_card(tmp_path, smollm2_card):
    """What a remote frontend gets from the object store is enough to rebuild the card."""
    folder = tmp_path / "from-files"
    folder.mkdir()
    for name, data in smollm2_card.files().items():
        (folder / name).write_bytes(data)
    again = load_card(str(folder), model_name=smollm2_card.display_name)
    for name in ("chat_template", "context_length", "eos_token_ids", "tokenizer_json"):
        assert getattr(again, name) == getattr(smollm2_card, name), name
    assert again.special_tokens() == smollm2_card.special_tokens()


def test_hf_folder_card(tmp_path, smollm2_card):
    folder = tmp_path / "MyModel"
    write_hf_folder(folder, smollm2_card)
    card = load_card(str(folder))
    assert card.display_name == "MyModel"
    assert card.source_path == str(folder)
    assert card.context_length == 2048  # config wins; the absurd model_max_length is ignored
    # generation_config's ids, config's id and the tokenizer's eos token, together
    assert card.eos_token_ids == [0, 2, 7]
    assert card.bos_token == "<|im_start|>"
    assert card.chat_template == smollm2_card.chat_template
    assert card.model_info["max_position_embeddings"] == 2048
    assert card.gen_config == {"eos_token_id": [2, 7]}


def test_context_length_fallbacks(tmp_path, smollm2_card):
    folder = tmp_path / "m"
    write_hf_folder(folder, smollm2_card)
    (folder / "config.json").write_text(
        json.dumps({"text_config": {"max_position_embeddings": 99}})
    )
    assert load_card(str(folder)).context_length == 99
    (folder / "config.json").write_text("{}")
    assert load_card(str(folder)).context_length is None  # model_max_length is 1e12: unset
    edit_json(folder / "tokenizer_config.json", model_max_length=4096)
    assert load_card(str(folder)).context_length == 4096
    assert load_card(str(folder), context_length=100).context_length == 100


def test_chat_template_sources_in_transformers_order(tmp_path, smollm2_card):
    folder = tmp_path / "m"
    write_hf_folder(folder, smollm2_card)
    edit_json(folder / "tokenizer_config.json", chat_template="from config")
    assert load_card(str(folder)).chat_template == "from config"
    (folder / "chat_template.jinja").write_text("J{{ messages|length }}")
    assert load_card(str(folder)).chat_template == "J{{ messages|length }}"  # the file wins
    (folder / "additional_chat_templates").mkdir()
    (folder / "additional_chat_templates" / "tool_use.jinja").write_text("T")
    assert load_card(str(folder)).chat_template == {
        "default": "J{{ messages|length }}",
        "tool_use": "T",
    }


def test_named_templates_in_tokenizer_config_survive_files(tmp_path, smollm2_card):
    folder = tmp_path / "m"
    write_hf_folder(folder, smollm2_card)
    named = [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]
    edit_json(folder / "tokenizer_config.json", chat_template=named)
    card = load_card(str(folder))
    assert card.chat_template == {"default": "D", "tool_use": "T"}
    config = json.loads(card.files()["tokenizer_config.json"])
    assert config["chat_template"] == named  # written back in HF's form


def test_gguf_with_model_config_takes_tokenizer_from_the_folder(
    tmp_path, smollm2_card, smollm2_gguf
):
    folder = tmp_path / "cfg"
    write_hf_folder(folder, smollm2_card, max_pos=4096)
    card = load_card(
        str(smollm2_gguf), model_config=str(folder), model_name="smol", context_length=1000
    )
    assert card.display_name == "smol"
    assert card.context_length == 1000
    assert card.eos_token_ids == [0, 2, 7]
    assert load_card(str(smollm2_gguf), model_config=str(folder)).context_length == 4096


def test_gguf_with_model_config_fills_gaps_from_the_gguf(tmp_path, smollm2_card, smollm2_gguf):
    folder = tmp_path / "cfg"
    write_hf_folder(folder, smollm2_card)
    (folder / "config.json").write_text("{}")
    edit_json(folder / "tokenizer_config.json", chat_template=None)
    card = load_card(str(smollm2_gguf), model_config=str(folder))
    assert card.context_length == 8192
    assert card.chat_template == smollm2_card.chat_template


def test_folder_with_only_a_gguf(tmp_path, smollm2_gguf):
    folder = tmp_path / "just-gguf"
    folder.mkdir()
    (folder / smollm2_gguf.name).symlink_to(smollm2_gguf)
    card = load_card(str(folder))
    assert card.display_name == "just-gguf"
    assert card.source_path == str(folder / smollm2_gguf.name)
    assert card.context_length == 8192


def test_unusable_paths_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelPathError, match=r"no tokenizer\.json"):
        load_card(str(tmp_path / "empty"))
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(ModelPathError, match="not a GGUF file"):
        load_card(str(tmp_path / "weights.bin"))


def test_card_for_name_only():
    card = ModelDeploymentCard.for_name_only("echo")
    assert card.display_name == "echo" and card.service_name == "echo"
    assert not card.has_tokenizer() and card.files() == {}
    with pytest.raises(ModelPathError, match="no tokenizer"):
        card.tokenizer()
