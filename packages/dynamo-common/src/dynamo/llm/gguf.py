"""Read a GGUF file's metadata and build a Hugging Face `tokenizers.Tokenizer` from it.

transformers' own GGUF loader needs torch, which we do not install; the `gguf` package reads the
metadata directly, and `tokenizers` builds the same BPE the model was trained with. The
pre-tokenizer follows llama.cpp's `tokenizer.ggml.pre` name, so text splits as llama.cpp splits it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

from dynamo.llm.engine import EngineError

log = logging.getLogger(__name__)

# llama.cpp token types (llama_token_type): control and user-defined tokens are "added" tokens.
_CONTROL, _USER_DEFINED = 3, 4

# Split regexes of llama.cpp's pre-tokenizers (llama-vocab.cpp), by `tokenizer.ggml.pre`.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


class GGUFError(EngineError):
    """The GGUF file cannot be read or its tokenizer is not one we can build."""


def _pre_tokenizer(pre: str | None) -> pre_tokenizers.PreTokenizer:
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if pre in ("llama-bpe", "llama3", "smaug-bpe", "dbrx"):
        split = pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated")
        return pre_tokenizers.Sequence([split, byte_level])
    if pre in ("qwen2", "deepseek-r1-qwen"):
        split = pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated")
        return pre_tokenizers.Sequence([split, byte_level])
    gpt2 = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("smollm", "starcoder", "refact"):
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), gpt2])
    if pre not in (None, "default", "gpt-2", "gpt2"):
        log.warning("GGUF pre-tokenizer '%s' is not known; splitting text as GPT-2 does", pre)
    return gpt2


@dataclass
class GGUFMetadata:
    """What serving needs from a GGUF file's metadata."""

    path: Path
    fields: dict[str, Any] = field(repr=False)

    @classmethod
    def read(cls, path: str | Path) -> GGUFMetadata:
        from gguf import GGUFReader

        path = Path(path)
        try:
            reader = GGUFReader(str(path))
        except (OSError, ValueError) as e:
            raise GGUFError(f"cannot read GGUF file {path.name}: {e}") from None
        fields = {}
        for name, f in reader.fields.items():
            if name.startswith(("general.", "tokenizer.")) or name.endswith(".context_length"):
                fields[name] = f.contents()
        return cls(path, fields)

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    @property
    def architecture(self) -> str | None:
        return self.get("general.architecture")

    @property
    def context_length(self) -> int | None:
        value = self.get(f"{self.architecture}.context_length")
        return int(value) if value else None

    @property
    def chat_template(self) -> str | None:
        return self.get("tokenizer.chat_template")

    def _token(self, key: str) -> str | None:
        idx = self.get(f"tokenizer.ggml.{key}_token_id")
        tokens = self.get("tokenizer.ggml.tokens") or []
        return tokens[idx] if idx is not None and 0 <= idx < len(tokens) else None

    @property
    def special_tokens(self) -> dict[str, str | None]:
        return {
            "bos_token": self._token("bos"),
            "eos_token": self._token("eos"),
            "unk_token": self._token("unknown"),
            "pad_token": self._token("padding"),
        }

    @property
    def eos_token_ids(self) -> list[int]:
        ids = [self.get("tokenizer.ggml.eos_token_id"), self.get("tokenizer.ggml.eot_token_id")]
        return sorted({int(i) for i in ids if i is not None})

    @cached_property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer the GGUF describes (BPE `gpt2` models: Llama 3, Qwen, SmolLM, ...)."""
        kind = self.get("tokenizer.ggml.model")
        if kind != "gpt2":
            raise GGUFError(
                f"{self.path.name}: tokenizer model '{kind}' cannot be built from GGUF metadata here; "
                "pass --model-config with the model's HF folder (tokenizer.json)"
            )
        tokens: list[str] = self.get("tokenizer.ggml.tokens")
        types: list[int] = self.get("tokenizer.ggml.token_type") or [1] * len(tokens)
        merges = [tuple(m.split(" ", 1)) for m in self.get("tokenizer.ggml.merges") or []]
        vocab = {tok: i for i, tok in enumerate(tokens)}
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
        tok.pre_tokenizer = _pre_tokenizer(self.get("tokenizer.ggml.pre"))
        tok.decoder = decoders.ByteLevel()
        added = [
            AddedToken(t, special=ty == _CONTROL, normalized=False)
            for t, ty in zip(tokens, types, strict=True)
            if ty in (_CONTROL, _USER_DEFINED)
        ]
        tok.add_tokens(added)
        return tok
