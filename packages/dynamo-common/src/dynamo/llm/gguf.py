"""Read a GGUF file's metadata and build a Hugging Face `tokenizers.Tokenizer` from it.

transformers' own GGUF loader imports torch, which we do not install; the `gguf` package reads the
metadata directly and `tokenizers` builds the same tokenizer llama.cpp runs, so the frontend and a
llama.cpp engine agree on every token id:

- `gpt2` (byte-level BPE: Llama 3, Qwen, SmolLM, ...): the file's vocab and merges; text is split
  with the regex llama.cpp uses for the file's `tokenizer.ggml.pre`.
- `llama` (SentencePiece BPE: Llama 2, Mistral v0.1, TinyLlama, ...): the vocab with byte fallback;
  the file has no merges, so they are recovered from the token scores (the merge llama.cpp prefers
  is the one whose result scores highest). As in llama.cpp, a space is put before the text and
  after every special token when `tokenizer.ggml.add_space_prefix` is on.

Control tokens (type 3) become special added tokens and user-defined tokens (type 4) plain added
tokens, so both stay whole wherever they appear in text, as llama.cpp keeps them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)

from dynamo.llm.errors import GGUFError

log = logging.getLogger(__name__)

# llama.cpp token types (llama_token_type).
_CONTROL, _USER_DEFINED = 3, 4

# Split regexes of llama.cpp's byte-level pre-tokenizers, by `tokenizer.ggml.pre`.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN35_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
    r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_TEKKEN_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPLITS = {
    **dict.fromkeys(
        ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "dbrx", "smaug-bpe"),
        _LLAMA3_SPLIT,
    ),
    **dict.fromkeys(("qwen2", "qwen2.5", "qwen-2.5", "deepseek-r1-qwen", "megrez"), _QWEN2_SPLIT),
    "qwen35": _QWEN35_SPLIT,
    "tekken": _TEKKEN_SPLIT,
    **dict.fromkeys(("gpt-4o", "llama4", "minimax-m2"), _GPT4O_SPLIT),
}
# These split every digit on its own, then split as GPT-2 does.
_DIGITS_THEN_GPT2 = {
    "smollm",
    "starcoder",
    "refact",
    "command-r",
    "codeshell",
    "exaone",
    "minerva-7b",
}
_GPT2 = {None, "default", "gpt-2", "gpt2", "mpt", "olmo", "jais"}


def _byte_level_pre_tokenizer(pre: str | None) -> pre_tokenizers.PreTokenizer:
    if pre in _SPLITS:
        split = pre_tokenizers.Split(Regex(_SPLITS[pre]), behavior="isolated")
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        return pre_tokenizers.Sequence([split, byte_level])
    gpt2 = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _DIGITS_THEN_GPT2:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), gpt2])
    if pre not in _GPT2:
        log.warning("GGUF pre-tokenizer '%s' is not known; splitting text as GPT-2 does", pre)
    return gpt2


def _score_merges(vocab: dict[str, int], scores: list[float]) -> list[tuple[str, str]]:
    """SentencePiece merges recovered from scores: best-scoring result first (as llama.cpp merges).

    Ties keep transformers' `generate_merges` order (longer left piece first), so the tokenizer is
    also the one transformers builds from the same file.
    """
    ranked: list[tuple[float, int, int, str, str]] = []
    for token, idx in vocab.items():
        pairs = [
            (token[:k], token[k:])
            for k in range(1, len(token))
            if token[:k] in vocab and token[k:] in vocab
        ]
        pairs.sort(key=lambda p: (vocab[p[0]], vocab[p[1]]))
        ranked += [(-scores[idx], -len(left), -len(right), left, right) for left, right in pairs]
    ranked.sort(key=lambda r: r[:3])
    return [(left, right) for *_, left, right in ranked]


@dataclass
class GGUFMetadata:
    """What serving needs from a GGUF file's metadata (the tensors are never read)."""

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

    @property
    def tokenizer_model(self) -> str | None:
        """`gpt2` (byte-level BPE), `llama` (SentencePiece), or another llama.cpp vocab type."""
        return self.get("tokenizer.ggml.model")

    @property
    def tokens(self) -> list[str]:
        return self.get("tokenizer.ggml.tokens") or []

    def token_id(self, key: str) -> int | None:
        """The id under `tokenizer.ggml.{key}_token_id` (bos, eos, eot, eom, unknown, padding)."""
        idx = self.get(f"tokenizer.ggml.{key}_token_id")
        return int(idx) if idx is not None and 0 <= idx < len(self.tokens) else None

    def _token(self, key: str) -> str | None:
        idx = self.token_id(key)
        return self.tokens[idx] if idx is not None else None

    @property
    def bos_token_id(self) -> int | None:
        return self.token_id("bos")

    @property
    def eos_token_id(self) -> int | None:
        return self.token_id("eos")

    @property
    def unk_token_id(self) -> int | None:
        return self.token_id("unknown")

    @property
    def pad_token_id(self) -> int | None:
        return self.token_id("padding")

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
        """Every id that ends generation: eos, end-of-turn and end-of-message."""
        ids = (self.token_id(k) for k in ("eos", "eot", "eom"))
        return sorted({i for i in ids if i is not None})

    @property
    def add_bos_token(self) -> bool:
        """Whether encoding starts with BOS; llama.cpp assumes so for SentencePiece files that are silent."""
        return bool(self.get("tokenizer.ggml.add_bos_token", self.tokenizer_model == "llama"))

    @property
    def add_eos_token(self) -> bool:
        return bool(self.get("tokenizer.ggml.add_eos_token", False))

    @property
    def tokenizer_config(self) -> dict[str, Any]:
        """The `tokenizer_config.json` an HF repo of this model would have (the template aside)."""
        specials = {k: v for k, v in self.special_tokens.items() if v is not None}
        return {
            **specials,
            "add_bos_token": self.add_bos_token,
            "add_eos_token": self.add_eos_token,
        }

    @cached_property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer the GGUF describes."""
        kind = self.tokenizer_model
        if kind == "gpt2":
            tok = self._byte_level_bpe()
        elif kind == "llama":
            tok = self._sentencepiece_bpe()
        else:
            raise GGUFError(
                f"{self.path.name}: tokenizer model '{kind}' cannot be built from GGUF metadata here; "
                "pass --model-config with the model's HF folder (tokenizer.json)"
            )
        types: list[int] = self.get("tokenizer.ggml.token_type") or []
        tok.add_tokens(
            [
                AddedToken(t, special=ty == _CONTROL, normalized=False)
                for t, ty in zip(self.tokens, types, strict=False)
                if ty in (_CONTROL, _USER_DEFINED)
            ]
        )
        post = self._post_processor()
        if post is not None:
            tok.post_processor = post
        return tok

    def _vocab(self) -> dict[str, int]:
        vocab: dict[str, int] = {}
        for i, t in enumerate(self.tokens):
            vocab.setdefault(
                t, i
            )  # a duplicated token keeps its first id, as lookups in llama.cpp do
        return vocab

    def _byte_level_bpe(self) -> Tokenizer:
        merges = [tuple(m.split(" ", 1)) for m in self.get("tokenizer.ggml.merges") or []]
        tok = Tokenizer(
            models.BPE(vocab=self._vocab(), merges=merges, fuse_unk=False, byte_fallback=False)
        )
        tok.pre_tokenizer = _byte_level_pre_tokenizer(self.get("tokenizer.ggml.pre"))
        tok.decoder = decoders.ByteLevel()
        return tok

    def _sentencepiece_bpe(self) -> Tokenizer:
        vocab = self._vocab()
        scores = self.get("tokenizer.ggml.scores") or [0.0] * len(self.tokens)
        unk = self._token("unknown")
        tok = Tokenizer(
            models.BPE(
                vocab=vocab,
                merges=_score_merges(vocab, scores),
                unk_token=unk,
                fuse_unk=True,
                byte_fallback=True,
            )
        )
        prefix = bool(self.get("tokenizer.ggml.add_space_prefix", True))
        # A normalizer, not a Metaspace pre-tokenizer: it runs on every stretch of text between
        # special tokens and prepends even when the text already starts with a space, as llama.cpp
        # does (and as Llama 2's own tokenizer.json does).
        steps_in: list[normalizers.Normalizer] = [normalizers.Replace(" ", "\u2581")]
        if prefix:
            steps_in.insert(0, normalizers.Prepend("\u2581"))
        tok.normalizer = normalizers.Sequence(steps_in)
        steps = [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
        if prefix:
            steps.append(decoders.Strip(" ", 1, 0))
        tok.decoder = decoders.Sequence(steps)
        return tok

    def _post_processor(self) -> processors.PostProcessor | None:
        """BOS/EOS added by `encode(add_special_tokens=True)`, as the file's flags ask."""
        bos, eos = self._token("bos"), self._token("eos")
        add_bos = self.add_bos_token and bos is not None
        add_eos = self.add_eos_token and eos is not None
        if not (add_bos or add_eos):
            return None

        def sequence(piece: str, type_id: int) -> list[str]:
            return [
                *([f"{bos}:{type_id}"] if add_bos else []),
                f"{piece}:{type_id}",
                *([f"{eos}:{type_id}"] if add_eos else []),
            ]

        single = sequence("$A", 0)
        pair = single + sequence("$B", 1)
        specials = [(bos, self.bos_token_id)] if add_bos else []
        if add_eos and eos != bos:
            specials.append((eos, self.eos_token_id))
        return processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)
