"""Engine log probabilities (`LLMEngineOutput.log_probs` / `top_logprobs`) into OpenAI's shapes.

An engine sends token ids and numbers; the client wants each token's text and UTF-8 bytes too.
A token's bytes are exact (a byte-level BPE token maps back through GPT-2's byte alphabet, a
SentencePiece byte-fallback token `<0xAB>` is that byte, `▁` is a space), and its text is those
bytes decoded, with U+FFFD for a token that holds only part of a character, as vLLM and OpenAI
report them. Both are cached per token id.

Chat (`choices[].logprobs.content[]`):
    {"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}
Completions (`choices[].logprobs`):
    {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from tokenizers import Tokenizer

_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@cache
def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet, character → byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = list(printable)
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


class TokenTexts:
    """Text and bytes of single tokens of one tokenizer, cached."""

    def __init__(self, tokenizer: Tokenizer):
        self._tokenizer = tokenizer
        decoder = tokenizer.decoder
        self._byte_level = decoder is not None and type(decoder).__name__ == "ByteLevel"
        self._cache: dict[int, tuple[str, list[int]]] = {}

    def get(self, token_id: int) -> tuple[str, list[int]]:
        """(text, UTF-8 bytes) of one token."""
        hit = self._cache.get(token_id)
        if hit is None:
            raw = self._bytes(token_id)
            hit = self._cache[token_id] = (raw.decode("utf-8", errors="replace"), list(raw))
        return hit

    def _bytes(self, token_id: int) -> bytes:
        piece = self._tokenizer.id_to_token(token_id)
        if piece is None:
            return b""
        special = self._tokenizer.decode([token_id], skip_special_tokens=True) == ""
        if special and piece:
            return piece.encode()
        if self._byte_level:
            alphabet = _byte_alphabet()
            if all(c in alphabet for c in piece):
                return bytes(alphabet[c] for c in piece)
            return piece.encode()
        m = _BYTE_TOKEN.match(piece)
        if m:
            return bytes([int(m.group(1), 16)])
        return piece.replace("\u2581", " ").encode()


@dataclass(slots=True)
class Candidate:
    token: str
    logprob: float
    bytes: list[int]


@dataclass(slots=True)
class TokenLogprob:
    """One generated token's log probability and its position's best alternatives."""

    token_id: int
    token: str
    logprob: float | None  # None only for a prompt's first token
    bytes: list[int]
    top: list[Candidate] = field(default_factory=list)


def from_engine(
    out: dict[str, Any], count: int, texts: TokenTexts, as_ids: bool = False
) -> list[TokenLogprob] | None:
    """The first `count` tokens' entries of an engine delta, or None if it carries none.

    `as_ids` writes tokens as `token_id:<id>` (vLLM's `return_tokens_as_token_ids`).
    """
    log_probs = out.get("log_probs")
    if log_probs is None or count <= 0:
        return None
    token_ids = out.get("token_ids") or ()
    tops = out.get("top_logprobs") or [None] * len(token_ids)
    entries = []
    for token_id, logprob, top in zip(token_ids[:count], log_probs, tops, strict=False):
        text, raw = _text(token_id, texts, as_ids)
        candidates = []
        for cand in top or ():
            cid = cand.get("token_id")
            ctext, craw = _text(cid, texts, as_ids) if cid is not None else (cand.get("token"), [])
            if cand.get("token") is not None and not as_ids:
                ctext = cand["token"]
                craw = cand.get("bytes") or list(ctext.encode())
            candidates.append(Candidate(ctext or "", float(cand["logprob"]), craw))
        entries.append(TokenLogprob(token_id, text, float(logprob), raw, candidates))
    return entries


def prompt_from_engine(
    positions: list[Any], prompt: list[int], texts: TokenTexts, as_ids: bool = False
) -> list[TokenLogprob]:
    """Entries for the prompt's tokens from an engine's `prompt_logprobs`: one list of
    candidates per prompt token (None for the first), holding the prompt token itself (its
    log probability) and the position's best alternatives (the top list)."""
    entries = []
    for i, token_id in enumerate(prompt):
        text, raw = _text(token_id, texts, as_ids)
        candidates = positions[i] if i < len(positions) else None
        if not candidates:
            entries.append(TokenLogprob(token_id, text, None, raw))
            continue
        own = next((c for c in candidates if c.get("token_id") == token_id), None)
        top = []
        for cand in sorted(candidates, key=lambda c: c.get("rank", 0)):
            ctext, craw = _text(cand["token_id"], texts, as_ids)
            top.append(Candidate(ctext, float(cand["logprob"]), craw))
        logprob = float(own["logprob"]) if own is not None else None
        entries.append(TokenLogprob(token_id, text, logprob, raw, top))
    return entries


def from_openai(logprobs: Any) -> list[TokenLogprob] | None:
    """Entries from a text-level engine's own OpenAI `logprobs` (chat's `content` list, or the
    completions arrays), so they reach the client in whichever shape it asked for."""
    if not logprobs:
        return None
    if isinstance(logprobs.get("content"), list):
        return [
            TokenLogprob(
                -1,
                e["token"],
                e["logprob"],
                e.get("bytes") or list(e["token"].encode()),
                [
                    Candidate(c["token"], c["logprob"], c.get("bytes") or list(c["token"].encode()))
                    for c in e.get("top_logprobs") or ()
                ],
            )
            for e in logprobs["content"]
        ]
    tokens = logprobs.get("tokens") or []
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or [None] * len(tokens)
    return [
        TokenLogprob(
            -1,
            token,
            value,
            list(token.encode()),
            [Candidate(t, lp, list(t.encode())) for t, lp in (top or {}).items()],
        )
        for token, value, top in zip(tokens, values, tops, strict=False)
    ] or None


def _text(token_id: int, texts: TokenTexts, as_ids: bool) -> tuple[str, list[int]]:
    if as_ids:
        text = f"token_id:{token_id}"
        return text, list(text.encode())
    return texts.get(token_id)


def chat_logprobs(entries: list[TokenLogprob]) -> dict[str, Any]:
    """`choices[].logprobs` of a chat completion (or chunk)."""
    return {
        "content": [
            {
                "token": e.token,
                "logprob": e.logprob,
                "bytes": e.bytes,
                "top_logprobs": [
                    {"token": c.token, "logprob": c.logprob, "bytes": c.bytes} for c in e.top
                ],
            }
            for e in entries
        ],
        "refusal": None,
    }


def completion_logprobs(entries: list[TokenLogprob], text_offset: int) -> dict[str, Any]:
    """`choices[].logprobs` of a completion (or chunk); offsets count from `text_offset`."""
    offsets = []
    for e in entries:
        offsets.append(text_offset)
        text_offset += len(e.token)
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [
            None if e.logprob is None else {c.token: c.logprob for c in e.top} for e in entries
        ],
        "text_offset": offsets,
    }
