"""The `ModelDeploymentCard`: everything a frontend needs to serve a model, and nothing it doesn't.

A card is built once where the model is (`load_card`) and can travel as JSON (`to_json`) with its
tokenizer inside, so a frontend on another host can preprocess for a model it never downloaded.

Where a field comes from, for an HF folder (as transformers reads the same folder):
- chat template: `chat_template.jinja` (plus `additional_chat_templates/*.jinja`, making a dict of
  named templates), else tokenizer_config's `chat_template` (a string, or a list of named ones),
  else the processor's `chat_template.json`;
- context length: the caller's, else config `max_position_embeddings` (or its `text_config`'s),
  else tokenizer_config `model_max_length` when it is a real number (< 1e9), else the GGUF's;
- EOS ids: the union of generation_config's, config's and the tokenizer's eos token, so generation
  stops wherever any of them says a turn ends.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from tokenizers import Tokenizer

from dynamo.llm.errors import ModelPathError
from dynamo.llm.gguf import GGUFMetadata
from dynamo.llm.model_source import default_model_name, resolve_model_path
from dynamo.runtime.slug import slugify

log = logging.getLogger(__name__)

# `model_max_length` at or above this means "unset" in tokenizer_config.json (it is often 1e30).
_SANE_MAX_LENGTH = 1_000_000_000


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise ModelPathError(f"{path.name} in {path.parent} is not valid JSON: {e}") from None
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json writes special tokens as strings or as `{"content": ...}`."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list) else [int(value)]


@dataclass
class ModelDeploymentCard:
    """Upstream's MDC: names, tokenizer, template, configs, context and KV block size."""

    display_name: str
    service_name: str = ""
    source_path: str | None = None
    tokenizer_json: str | None = field(default=None, repr=False)
    tokenizer_config: dict[str, Any] = field(default_factory=dict, repr=False)
    chat_template: str | dict[str, str] | None = field(default=None, repr=False)
    model_info: dict[str, Any] = field(default_factory=dict, repr=False)
    gen_config: dict[str, Any] = field(default_factory=dict, repr=False)
    context_length: int | None = None
    kv_cache_block_size: int = 16
    eos_token_ids: list[int] = field(default_factory=list)
    bos_token: str | None = None
    eos_token: str | None = None
    unk_token: str | None = None
    pad_token: str | None = None
    runtime_config: dict[str, Any] = field(default_factory=dict)
    user_data: dict[str, Any] | None = None
    migration_limit: int = 0
    #: The request features the serving engine honours (`dynamo.llm.features`); None: not declared.
    features: list[str] | None = None

    def __post_init__(self) -> None:
        self.service_name = self.service_name or slugify(self.display_name)
        self._tokenizer: Tokenizer | None = None

    @classmethod
    def for_name_only(cls, name: str) -> ModelDeploymentCard:
        """A card for an engine that needs no model (echo_full): a name and nothing else."""
        return cls(display_name=name)

    def has_tokenizer(self) -> bool:
        return self.tokenizer_json is not None

    def tokenizer(self) -> Tokenizer:
        """The HF tokenizer, built once per card."""
        if self._tokenizer is None:
            if self.tokenizer_json is None:
                raise ModelPathError(f"model '{self.display_name}' has no tokenizer")
            self._tokenizer = Tokenizer.from_str(self.tokenizer_json)
        return self._tokenizer

    def special_tokens(self) -> dict[str, str | None]:
        return {
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "unk_token": self.unk_token,
            "pad_token": self.pad_token,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes | str) -> ModelDeploymentCard:
        fields = orjson.loads(data)
        known = {k: v for k, v in fields.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def mdcsum(self) -> str:
        """A content hash of the card: sha256 of `to_json()`.

        Upstream hashes with blake3; sha256 is in the standard library and serves the same purpose
        (telling whether two workers serve the same card), so the values differ from upstream's.
        """
        return hashlib.sha256(self.to_json()).hexdigest()

    def files(self) -> dict[str, bytes]:
        """The files a remote frontend needs (for the object store), as an HF folder holds them.

        Written to a folder, they load back (`load_card`) into a card with the same tokenizer,
        template, special tokens and EOS ids.
        """
        out: dict[str, bytes] = {}
        if self.tokenizer_json is not None:
            out["tokenizer.json"] = self.tokenizer_json.encode()
        if self.tokenizer_config or self.chat_template is not None or self.eos_token:
            config = dict(self.tokenizer_config)
            config.update({k: v for k, v in self.special_tokens().items() if v is not None})
            template = self.chat_template
            if isinstance(template, dict):  # HF's form of named templates
                template = [{"name": k, "template": v} for k, v in template.items()]
            if template is not None:
                config["chat_template"] = template
            out["tokenizer_config.json"] = orjson.dumps(config)
        # What the card knows beyond the model's own files (a GGUF's context length, EOS ids) is
        # written where an HF folder would have it.
        config = dict(self.model_info)
        if self.context_length and not _context_length(config, {}):
            config["max_position_embeddings"] = self.context_length
        if config:
            out["config.json"] = orjson.dumps(config)
        gen = dict(self.gen_config)
        if self.eos_token_ids:
            gen["eos_token_id"] = self.eos_token_ids
        if gen:
            out["generation_config.json"] = orjson.dumps(gen)
        return out


def _chat_template(folder: Path, tok_config: dict[str, Any]) -> str | dict[str, str] | None:
    templates: dict[str, str] = {}
    if (folder / "chat_template.jinja").is_file():
        templates["default"] = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    for extra in sorted((folder / "additional_chat_templates").glob("*.jinja")):
        templates[extra.name.removesuffix(".jinja")] = extra.read_text(encoding="utf-8")
    if templates:
        return templates["default"] if list(templates) == ["default"] else templates
    template: Any = tok_config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        return {t["name"]: t["template"] for t in template}
    if template is None and (folder / "chat_template.json").is_file():
        template = _read_json(folder / "chat_template.json").get("chat_template")
    return template


def _context_length(config: dict[str, Any], tok_config: dict[str, Any]) -> int | None:
    for cfg in (config, config.get("text_config") or {}):
        value = cfg.get("max_position_embeddings") or cfg.get("max_sequence_length")
        if value:
            return int(value)
    max_len = tok_config.get("model_max_length")
    if isinstance(max_len, int | float) and 0 < max_len < _SANE_MAX_LENGTH:
        return int(max_len)
    return None


def _hf_folder_fields(folder: Path) -> dict[str, Any]:
    """Card fields from an HF folder (tokenizer.json, tokenizer_config.json, configs, template)."""
    tok_file = folder / "tokenizer.json"
    if not tok_file.is_file():
        raise ModelPathError(f"{folder} has no tokenizer.json")
    tok_config = _read_json(folder / "tokenizer_config.json")
    config = _read_json(folder / "config.json")
    gen = _read_json(folder / "generation_config.json")
    tokenizer_json = tok_file.read_text(encoding="utf-8")
    specials = {
        k: _token_text(tok_config.get(k))
        for k in ("bos_token", "eos_token", "unk_token", "pad_token")
    }
    eos_ids = set(_as_list(gen.get("eos_token_id")) + _as_list(config.get("eos_token_id")))
    if specials["eos_token"]:
        eos_id = Tokenizer.from_str(tokenizer_json).token_to_id(specials["eos_token"])
        if eos_id is not None:
            eos_ids.add(eos_id)
    return {
        "tokenizer_json": tokenizer_json,
        "tokenizer_config": tok_config,
        "chat_template": _chat_template(folder, tok_config),
        "model_info": config,
        "gen_config": gen,
        "context_length": _context_length(config, tok_config),
        "eos_token_ids": sorted(eos_ids),
        **specials,
    }


def _gguf_fields(meta: GGUFMetadata) -> dict[str, Any]:
    return {
        "tokenizer_json": meta.tokenizer.to_str(),
        "tokenizer_config": meta.tokenizer_config,
        "chat_template": meta.chat_template,
        "model_info": {"architecture": meta.architecture},
        "context_length": meta.context_length,
        "eos_token_ids": meta.eos_token_ids,
        **meta.special_tokens,
    }


def load_card(
    model_path: str,
    *,
    model_name: str | None = None,
    model_config: str | None = None,
    context_length: int | None = None,
    kv_cache_block_size: int = 16,
) -> ModelDeploymentCard:
    """Build the card for a local HF folder, a GGUF file (+ optional HF folder), or an HF repo id.

    A GGUF with `model_config` takes its tokenizer, template and configs from that folder, and
    only what the folder lacks (context length, template) from the GGUF's metadata.
    """
    path = resolve_model_path(model_path)
    if path.is_file() and path.suffix != ".gguf":
        raise ModelPathError(f"{path.name} is not a GGUF file or a model folder")
    if path.is_dir() and not (path / "tokenizer.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        path = ggufs[0] if ggufs else path  # a folder holding just a GGUF file
    meta = GGUFMetadata.read(path) if path.suffix == ".gguf" else None
    if model_config:
        fields = _hf_folder_fields(resolve_model_path(model_config))
        if meta is not None:
            fields["context_length"] = fields["context_length"] or meta.context_length
            if fields["chat_template"] is None:
                fields["chat_template"] = meta.chat_template
    elif meta is not None:
        fields = _gguf_fields(meta)
    else:
        fields = _hf_folder_fields(path)
    if context_length:
        fields["context_length"] = context_length
    return ModelDeploymentCard(
        display_name=model_name or default_model_name(model_path),
        source_path=str(path),
        kv_cache_block_size=kv_cache_block_size,
        **fields,
    )
