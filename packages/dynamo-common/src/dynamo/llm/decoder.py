"""Token ids → text, incrementally, with the stop conditions applied (upstream `backend.rs`).

Runs once per generated token on the frontend, so the detokenization itself is
`tokenizers.decoders.DecodeStream` (Rust, about half a microsecond a token): it never emits half a
UTF-8 character, and seeded with the end of the prompt it decodes context-dependent tokens (the
leading space of a SentencePiece `▁word` after other text) as they read in the whole sequence.
Around it this module adds what `DecodeStream` lacks:

- recovery from its "invalid prefix" error, which byte-fallback tokenizers raise when a later
  byte turns earlier valid bytes into replacement characters (seen with real models: vLLM #17448);
- a bound on how many tokens it may hold back (a character is at most 4 bytes), so a model that
  emits invalid byte sequences cannot make each step decode an ever longer tail;
- a flush when the response ends, so bytes of an unfinished character come out as U+FFFD, as in
  `tokenizer.decode(all_ids)`, instead of vanishing;
- for byte-level BPE tokenizers (GPT-2 style: Llama 3, Qwen, SmolLM2), `TokenPieces`: the text of
  each token that decodes to whole characters on its own, looked up instead of decoded. On a
  frontend streaming one token per stream per wake-up (realistic pacing), `DecodeStream.step`
  was ~10% of the CPU per token (a call into Rust that decodes a window of ids and slices the
  result); a dict lookup is ~20x cheaper. The stream decodes the rest as before.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer
from tokenizers.decoders import ByteLevel, DecodeStream

from dynamo.llm.protocols.wire import FinishReason
from dynamo.llm.stop_strings import StopStringJail

log = logging.getLogger(__name__)

# The last few prompt ids are all the context decoding needs; seeding the whole prompt would
# only cost time.
_PROMPT_SEED = 8
# A UTF-8 character spans at most 4 byte tokens; more held-back tokens than this means invalid
# bytes (or a run of skipped special tokens), and the held tokens are flushed.
_MAX_HELD = 8
_REPLACEMENT = "\ufffd"
_INVALID_PREFIX = "Invalid prefix"
_MAX_ID = 0xFFFFFFFF  # token ids are u32 in tokenizers


class TokenPieces(dict[int, str | None]):
    """Token id -> its text when decoding it in any context gives exactly that text, else None
    (filled as tokens are first seen; `TokenPieces.of` gives one only where this holds).

    A byte-level BPE decoder turns the ids it decodes into the concatenation of their tokens'
    bytes, then into text (`ByteLevel`: one lossy UTF-8 decoding of all the bytes). When the text
    so far is whole characters (nothing held back) and a token's own bytes are whole characters,
    the new text is those characters: `decode(ids + [t])[len(decode(ids)):] == decode([t])`. A
    token whose bytes are part of a character (its decoding alone holds U+FFFD) is None and goes
    through `DecodeStream`, as do added tokens (special or not: decoded by content, skipped with
    `skip_special_tokens`) and ids outside the vocabulary.
    """

    __slots__ = ("_added", "_size", "_tokenizer")

    def __init__(self, tokenizer: Tokenizer):
        super().__init__()
        self._tokenizer = tokenizer
        self._size = tokenizer.get_vocab_size(with_added_tokens=False)
        self._added = frozenset(tokenizer.get_added_tokens_decoder())

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> TokenPieces | None:
        """The lookup for `tokenizer`; None unless its decoder is plain byte-level (the others,
        SentencePiece's among them, decode a token differently by what precedes it)."""
        return cls(tokenizer) if isinstance(tokenizer.decoder, ByteLevel) else None

    def __missing__(self, token: int) -> str | None:
        if not (isinstance(token, int) and 0 <= token < self._size) or token in self._added:
            return None  # not remembered: the set of ids looked up stays within the vocabulary
        text: str | None = self._tokenizer.decode([token], skip_special_tokens=False)
        if not text or _REPLACEMENT in text:
            text = None
        self[token] = text
        return text


@dataclass(slots=True)
class DecodeResult:
    """What one `Decoder.step` produced."""

    text: str  # new text safe to emit now (may be "")
    finish_reason: FinishReason | None = None
    stop_reason: str | int | None = None  # the matched stop string, or the visible stop token id


class Decoder:
    """Decodes one response and applies its stop conditions.

    - hidden stop ids (EOS): finish `eos`; the token's text is not emitted;
    - visible stop ids: the token's text is emitted, then finish `stop`, stop_reason = the id;
    - stop strings: finish `stop`, stop_reason = the string, with the text up to the match (through
      it with `include_stop_str_in_output`); a stop string found in the same token as a visible
      stop id wins, so a stop string never reaches the client;
    - `max_tokens`: finish `length` once that many tokens were fed, the last one's text emitted;
    - while fewer than `min_tokens` tokens were fed (this one included) no stop id or string is
      checked, as upstream: `max_tokens` alone can end the response.

    `completion_tokens` counts every token fed up to and including the one that finished the
    response, a hidden EOS included (as upstream and vLLM count it); tokens after it are ignored.
    """

    __slots__ = (
        "_clean",
        "_count",
        "_finished",
        "_held",
        "_hidden",
        "_jail",
        "_last",
        "_max",
        "_min",
        "_pieces",
        "_skip_special",
        "_stale",
        "_stream",
        "_tokenizer",
        "_visible",
    )

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        prompt_token_ids: Sequence[int] = (),
        max_tokens: int | None = None,
        stop: Sequence[str] = (),
        stop_token_ids: Sequence[int] = (),
        hidden_stop_token_ids: Sequence[int] = (),
        min_tokens: int = 0,
        include_stop_str_in_output: bool = False,
        skip_special_tokens: bool = False,
        pieces: TokenPieces | None = None,
    ) -> None:
        self._tokenizer = tokenizer
        #: `TokenPieces.of(tokenizer)`, shared by the model's decoders (None: always decode).
        self._pieces = pieces
        #: Tokens were looked up since the stream last decoded: it must start over after them.
        self._stale = False
        #: The stream holds back nothing: the text so far ends on a whole character.
        self._clean = True
        self._skip_special = skip_special_tokens
        self._max = sys.maxsize if max_tokens is None else max_tokens
        self._min = min_tokens or 0
        jail = StopStringJail(stop, include_stop_str_in_output)
        self._jail = jail if jail else None
        self._visible = frozenset(stop_token_ids)
        self._hidden = frozenset(hidden_stop_token_ids)
        self._count = 0
        self._finished = False
        # Tokens DecodeStream holds back (an unfinished character), and the last token that
        # produced text: the context to decode the held ones with if they must be flushed.
        self._held: list[int] = []
        seed = list(prompt_token_ids[-_PROMPT_SEED:])
        self._last: int | None = seed[-1] if seed else None
        self._stream = self._new_stream(seed)

    @classmethod
    def from_request(
        cls, tokenizer: Tokenizer, request: dict[str, Any], pieces: TokenPieces | None = None
    ) -> Decoder:
        """A decoder for a `PreprocessedRequest` dict (`pieces`: `TokenPieces.of(tokenizer)`).

        The model's `eos_token_ids` join `stop_token_ids_hidden` unless `ignore_eos`, which
        drops all hidden stops as upstream's `apply_ignore_eos`.
        """
        cond = request.get("stop_conditions") or {}
        sampling = request.get("sampling_options") or {}
        output = request.get("output_options") or {}
        hidden: list[int] = []
        if not cond.get("ignore_eos"):
            hidden.extend(cond.get("stop_token_ids_hidden") or ())
            hidden.extend(request.get("eos_token_ids") or ())
        stop = cond.get("stop") or ()
        return cls(
            tokenizer,
            prompt_token_ids=request.get("token_ids") or (),
            max_tokens=cond.get("max_tokens"),
            stop=[stop] if isinstance(stop, str) else stop,
            stop_token_ids=cond.get("stop_token_ids") or (),
            hidden_stop_token_ids=hidden,
            min_tokens=cond.get("min_tokens") or 0,
            include_stop_str_in_output=bool(sampling.get("include_stop_str_in_output")),
            skip_special_tokens=bool(output.get("skip_special_tokens")),
            pieces=pieces,
        )

    @property
    def completion_tokens(self) -> int:
        return self._count

    @property
    def finished(self) -> bool:
        return self._finished

    def step(self, token_ids: Sequence[int]) -> DecodeResult:
        """Feed one engine delta; tokens after the one that finishes are ignored."""
        if self._finished:
            return DecodeResult("")
        out = ""
        pieces = self._pieces
        for token in token_ids:
            self._count = count = self._count + 1
            checking = count >= self._min
            if checking and token in self._hidden:
                return self._end(out, FinishReason.EOS, None)
            # Whole characters so far and a token that is whole characters: its text is known.
            piece = pieces[token] if pieces is not None and self._clean else None
            if piece is not None:
                self._stale = True
                self._last = token
            else:
                if self._stale:
                    self._restart()
                try:
                    piece = self._stream.step(self._tokenizer, token)
                    self._clean = piece is not None
                except Exception as exc:  # an id it refuses leaves the stream as it was
                    piece = self._recover(token, exc)
                if piece is None:
                    piece = self._hold(token)
                else:
                    self._last = token
                    if self._held:
                        self._held.clear()
            if piece:
                if checking and self._jail is not None:
                    safe, matched = self._jail.feed(piece)
                    out += safe
                    if matched is not None:
                        self._held.clear()
                        return self._end(out, FinishReason.STOP, matched)
                else:
                    out += piece
            if checking and token in self._visible:
                return self._end(out, FinishReason.STOP, token)
            if count >= self._max:
                return self._end(out, FinishReason.LENGTH, None)
        return DecodeResult(out)

    def finish(self) -> str:
        """The stream ended: release text held back for a stop string that never completed,
        and the bytes of an unfinished character (as U+FFFD)."""
        if self._finished:
            return ""
        result = self._end("", None, None)
        return result.text

    # -- the cold paths ------------------------------------------------------------------------

    def _end(
        self, out: str, reason: FinishReason | None, stop_reason: str | int | None
    ) -> DecodeResult:
        """Finish the response: flush held-back tokens and jailed text (unless a stop string
        cut the text, which drops everything after it)."""
        self._finished = True
        tail = self._flush()
        jail = self._jail
        if jail is not None and self._count >= self._min:
            if tail:
                safe, matched = jail.feed(tail)
                out += safe
                if matched is not None:
                    return DecodeResult(out, FinishReason.STOP, matched)
            out += jail.release()
        else:
            out += tail
        return DecodeResult(out, reason, stop_reason)

    def _new_stream(self, context: list[int]) -> DecodeStream:
        """A DecodeStream seeded with `context`, minus any unfinished character at its end: a
        seed that decodes to a trailing U+FFFD is not taken as a prefix by DecodeStream, and the
        prompt's text would leak into the output."""
        while context and self._decode(context).endswith(_REPLACEMENT):
            context.pop()
        return DecodeStream(ids=context, skip_special_tokens=self._skip_special)

    def _restart(self) -> None:
        """Tokens went by the stream (`TokenPieces`): start it again after the last of them,
        which ended on a whole character."""
        self._stale = False
        self._clean = True
        last = self._last
        self._stream = self._new_stream([last] if last is not None else [])

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip_special)

    def _hold(self, token: int) -> str:
        """DecodeStream held `token` back; past `_MAX_HELD` tokens, give up waiting and flush."""
        self._held.append(token)
        if len(self._held) <= _MAX_HELD:
            return ""
        text = self._flush()
        self._last = token
        return text

    def _flush(self) -> str:
        """Decode the held-back tokens as they are (invalid bytes → U+FFFD) and restart the
        stream after them."""
        held = self._held
        if not held:
            return ""
        last = self._last
        context = [last] if last is not None and 0 <= last <= _MAX_ID else []
        before = self._decode(context)
        text = self._decode(context + held)
        # Decoding in context keeps a leading space SentencePiece would strip at the start.
        text = text[len(before) :] if text.startswith(before) else self._decode(held)
        self._stream = self._new_stream([held[-1]])
        self._clean = True
        held.clear()
        return text

    def _recover(self, token: int, exc: Exception) -> str:
        """DecodeStream failed on `token`: emit what the held tokens and it decode to, restart."""
        if isinstance(exc, TypeError | OverflowError):
            # Not a token id DecodeStream accepts (negative, too large): count it, emit nothing.
            log.warning("decoder: ignoring invalid token id %r", token)
            return ""
        if not str(exc).startswith(_INVALID_PREFIX):
            raise exc
        # A byte-fallback tokenizer turned earlier bytes into U+FFFD once this one came: the
        # earlier text is out already, so decode from the held tokens on, in a fresh stream.
        log.debug("decoder: restarting the decode stream after %s", exc)
        self._held.append(token)
        text = self._flush()
        self._last = token
        return text
