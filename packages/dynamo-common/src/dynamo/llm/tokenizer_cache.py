"""Prompt tokenization that remembers the long stretches it has seen (a tokenizer prefix cache).

Chat prompts repeat themselves: every turn of a conversation resends the system prompt and the
history, and many users share one long system prompt or document. Tokenizing a 7.8k-token prompt
takes ~10 ms, most of a cached request's time to first token.

`tokenizers` splits a text at its special tokens (`<|im_start|>`, `<|eot_id|>` ...) before any
normalizing or pre-tokenizing, and encodes the stretches between them independently. So a
prompt's ids are the concatenation of its stretches' ids and the special tokens' ids, and a
stretch seen before (the system prompt, an earlier turn) can be reused by its text. That is what
`SegmentedEncoder` does, for stretches long enough to be worth it.

It is exact only where the tokenizer really works that way: special tokens that do not strip
the whitespace next to them, and a pre-tokenizer that does not treat the text's first stretch
differently (SentencePiece's Metaspace with `prepend_scheme: first` does). Rather than trust a
list of rules, the encoder checks itself at start-up against the tokenizer on probe texts and
turns itself off (plain `encode`) when any differs; tests compare it on the common templates.
"""

from __future__ import annotations

import re
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer

#: Stretches shorter than this (characters) are encoded every time: they are cheap, and caching
#: them would churn the cache with every question.
MIN_CACHED_CHARS = 512
#: Token ids the cache holds at most (as 4-byte arrays: 1M tokens are 4 MB).
DEFAULT_CAPACITY_TOKENS = 1 << 20

EncodeMany = Callable[[list[str]], list[list[int]]]


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    #: Prompt tokens served from the cache, and encoded afresh, over all prompts.
    cached_tokens: int = 0
    encoded_tokens: int = 0


class SegmentedEncoder:
    """`tokenizer.encode(text, add_special_tokens=False).ids`, with cached long stretches."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        capacity_tokens: int = DEFAULT_CAPACITY_TOKENS,
        min_cached_chars: int = MIN_CACHED_CHARS,
    ) -> None:
        self.tokenizer = tokenizer
        self.capacity_tokens = capacity_tokens
        self.min_cached_chars = min_cached_chars
        self.stats = CacheStats()
        self._cache: OrderedDict[str, array] = OrderedDict()
        self._cached_tokens = 0
        self._lock = threading.Lock()
        specials = {
            token.content: token_id
            for token_id, token in tokenizer.get_added_tokens_decoder().items()
            if token.special and token.content
        }
        self._special_ids = specials
        self._splitter = (
            re.compile(
                "(" + "|".join(map(re.escape, sorted(specials, key=len, reverse=True))) + ")"
            )
            if specials
            else None
        )
        #: False when the tokenizer does not encode stretches independently (see the module
        #: docstring): then every call is a plain `encode`.
        self.enabled = capacity_tokens > 0 and self._agrees_with_tokenizer()

    # -- encoding -------------------------------------------------------------------------------

    def plan(self, text: str) -> tuple[list[int | str | array], list[str]]:
        """The prompt as pieces (special-token ids, cached ids, stretches to encode) and the
        stretches still to encode, in order; `assemble` joins them once they are encoded."""
        if not self.enabled:
            return [text], [text]
        pieces: list[int | str | array] = []
        todo: list[str] = []
        with self._lock:
            for piece in self._split(text):
                if isinstance(piece, str) and len(piece) >= self.min_cached_chars:
                    cached = self._cache.get(piece)
                    if cached is not None:
                        self._cache.move_to_end(piece)
                        piece = cached
                pieces.append(piece)
                if isinstance(piece, str):
                    todo.append(piece)
        return pieces, todo

    def _split(self, text: str) -> list[int | str]:
        """The text's stretches, with each special token between them as its id."""
        if self._splitter is None:
            return [text] if text else []
        parts = self._splitter.split(text)
        # `split` with a capture group alternates text and the special tokens it matched.
        return [self._special_ids[part] if i % 2 else part for i, part in enumerate(parts) if part]

    def assemble(self, pieces: list[int | str | array], encoded: Sequence[list[int]]) -> list[int]:
        """The prompt's ids from `plan`'s pieces and its stretches' fresh ids (same order)."""
        ids: list[int] = []
        fresh = iter(encoded)
        stats = self.stats
        with self._lock:
            for piece in pieces:
                if isinstance(piece, int):
                    ids.append(piece)
                elif isinstance(piece, array):
                    ids.extend(piece)
                    stats.hits += 1
                    stats.cached_tokens += len(piece)
                else:
                    part_ids = next(fresh)
                    ids.extend(part_ids)
                    stats.encoded_tokens += len(part_ids)
                    if self.enabled and len(piece) >= self.min_cached_chars:
                        stats.misses += 1
                        self._remember(piece, part_ids)
        return ids

    def encode(self, text: str) -> list[int]:
        pieces, todo = self.plan(text)
        return self.assemble(pieces, self.encode_many(todo))

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        """Plain encodes, holding the GIL (`encode_batch` releases it: for worker threads)."""
        encode = self.tokenizer.encode
        return [encode(t, add_special_tokens=False).ids for t in texts]

    def encode_many_released(self, texts: list[str]) -> list[list[int]]:
        """`encode_many` with the GIL released (and stretches encoded in parallel)."""
        return [e.ids for e in self.tokenizer.encode_batch(texts, False)]

    # -- cache ----------------------------------------------------------------------------------

    def _remember(self, text: str, ids: list[int]) -> None:
        if len(ids) > self.capacity_tokens or text in self._cache:
            return
        self._cache[text] = array("I", ids)
        self._cached_tokens += len(ids)
        while self._cached_tokens > self.capacity_tokens:
            _, evicted = self._cache.popitem(last=False)
            self._cached_tokens -= len(evicted)

    def cache_size(self) -> tuple[int, int]:
        """(stretches, tokens) held."""
        return len(self._cache), self._cached_tokens

    # -- self-check -----------------------------------------------------------------------------

    def _agrees_with_tokenizer(self) -> bool:
        """Whether encoding stretch by stretch gives the tokenizer's own ids on probe texts."""
        specials = list(self._special_ids)[:8]
        bodies = [
            "system\nYou are a helpful assistant.  Answer briefly.\n",
            " user\n Hello, wörld! 12345\n\n  indented\ttab ",
            "assistant\n",
            "\n",
            " ",
            "tail without newline",
        ]
        probes = ["".join(bodies)]
        for special in specials:
            probes.append(special.join(bodies))
            probes.append(special + bodies[0] + special + special + bodies[1])
        encode = self.tokenizer.encode
        for probe in probes:
            ids: list[int] = []
            for piece in self._split(probe):
                ids.extend([piece] if isinstance(piece, int) else self.encode_many([piece])[0])
            if ids != encode(probe, add_special_tokens=False).ids:
                return False
        return True


__all__ = ["CacheStats", "SegmentedEncoder"]
