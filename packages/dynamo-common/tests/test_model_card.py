from __future__ import annotations

import json

from dynamo.llm.model_card import ModelDeploymentCard, load_card


def write_hf_folder(folder, card: ModelDeploymentCard, *, max_pos: int = 2048) -> None:
    """An HF-style folder written from a card's files (as a remote frontend would receive them)."""
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


def test_gguf_card(smollm2_card, smollm2_gguf):
    card = smollm2_card
    assert card.display_name == "SmolLM2-135M-Instruct.Q4_1"
    assert card.service_name == "smollm2-135m-instruct_q4_1"
    assert card.context_length == 8192
    assert card.eos_token_ids == [2]
    assert card.source_path == str(smollm2_gguf)
    assert card.tokenizer().encode("Hello world").ids == [19556, 905]


def test_json_round_trip_keeps_everything(smollm2_card):
    again = ModelDeploymentCard.from_json(smollm2_card.to_json())
    assert again.to_json() == smollm2_card.to_json()
    assert again.mdcsum() == smollm2_card.mdcsum()
    assert (
        again.tokenizer().encode("héllo 🤖").ids == smollm2_card.tokenizer().encode("héllo 🤖").ids
    )


def test_hf_folder_card(tmp_path, smollm2_card):
    folder = tmp_path / "MyModel"
    write_hf_folder(folder, smollm2_card)
    card = load_card(str(folder))
    assert card.display_name == "MyModel"
    assert card.context_length == 2048  # config wins; the absurd model_max_length is ignored
    assert card.eos_token_ids == [2, 7]  # generation_config's ids plus the tokenizer's eos token
    assert card.bos_token == "<|im_start|>"
    assert card.chat_template == smollm2_card.chat_template


def test_chat_template_jinja_file_and_named_templates(tmp_path, smollm2_card):
    folder = tmp_path / "m"
    write_hf_folder(folder, smollm2_card)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "chat_template.jinja").write_text("J{{ messages|length }}")
    assert load_card(str(folder)).chat_template == "J{{ messages|length }}"
    config["chat_template"] = [
        {"name": "default", "template": "D"},
        {"name": "tool_use", "template": "T"},
    ]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert load_card(str(folder)).chat_template == {"default": "D", "tool_use": "T"}


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
    assert card.eos_token_ids == [2, 7]
