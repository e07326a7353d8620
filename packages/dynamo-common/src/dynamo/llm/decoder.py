"""Token ids → text, incrementally, with the stop conditions applied (upstream `backend.rs`).

Runs once per generated token on the frontend, so it leans on `tokenizers.decoders.DecodeStream`
(Rust) for the detokenization, which never emits half a UTF-8 character and is seeded with the
prompt so context-dependent decoding (leading spaces) comes out right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream

from dynamo.llm.protocols.wire import FinishReason
from dynamo.llm.stop_strings import StopStringJail

# Seeding the stream with the whole prompt costs time for nothing: the last few ids give the context.
_PROMPT_SEED = 8


@dataclass(slots=True)
class DecodeResult:
    text: str
    finish_reason: FinishReason | None = None
    stop_reason: str | int | None = None


class Decoder:
    """Decodes one response. Every fed token is counted; the finishing one ends the response.

    - hidden stop ids (EOS): finish `eos`, the token's text is not emitted;
    - visible stop ids: the token's text is emitted, then finish `stop` with the id as stop_reason;
    - stop strings: finish `stop` with the text up to (or through) the match;
    - `max_tokens`: finish `length` after emitting the last token's text;
    - below `min_tokens` nothing but `max_tokens` can stop the response.
    """

    __slots__ = (
        "_count",
        "_finished",
        "_hidden",
        "_jail",
        "_max",
        "_min",
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
    ) -> None:
        self._tokenizer = tokenizer
        seed = list(prompt_token_ids[-_PROMPT_SEED:])
        self._stream = DecodeStream(ids=seed, skip_special_tokens=skip_special_tokens)
        self._max = max_tokens
        self._min = min_tokens or 0
        self._jail = StopStringJail(stop, include_stop_str_in_output)
        self._visible = frozenset(stop_token_ids)
        self._hidden = frozenset(hidden_stop_token_ids)
        self._count = 0
        self._finished = False

    @classmethod
    def from_request(cls, tokenizer: Tokenizer, request: dict[str, Any]) -> Decoder:
        """A decoder for a `PreprocessedRequest` dict."""
        stop = request.get("stop_conditions") or {}
        sampling = request.get("sampling_options") or {}
        output = request.get("output_options") or {}
        hidden = list(stop.get("stop_token_ids_hidden") or ())
        if not stop.get("ignore_eos"):
            hidden.extend(request.get("eos_token_ids") or ())
        return cls(
            tokenizer,
            prompt_token_ids=request.get("token_ids") or (),
            max_tokens=stop.get("max_tokens"),
            stop=stop.get("stop") or (),
            stop_token_ids=stop.get("stop_token_ids") or (),
            hidden_stop_token_ids=() if stop.get("ignore_eos") else hidden,
            min_tokens=stop.get("min_tokens") or 0,
            include_stop_str_in_output=bool(sampling.get("include_stop_str_in_output")),
            skip_special_tokens=bool(output.get("skip_special_tokens")),
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
        parts: list[str] = []
        for token in token_ids:
            self._count += 1
            checking = self._count > self._min
            if checking and token in self._hidden:
                parts.append(self._jail.release())
                return self._finish(parts, FinishReason.EOS, None)
            piece = self._stream.step(self._tokenizer, token) or ""
            if checking and self._jail:
                safe, matched = self._jail.feed(piece)
                parts.append(safe)
                if matched is not None:
                    return self._finish(parts, FinishReason.STOP, matched)
            else:
                parts.append(piece)
            if checking and token in self._visible:
                parts.append(self._jail.release())
                return self._finish(parts, FinishReason.STOP, token)
            if self._max is not None and self._count >= self._max:
                parts.append(self._jail.release())
                return self._finish(parts, FinishReason.LENGTH, None)
        return DecodeResult("".join(parts))

    def _finish(
        self, parts: list[str], reason: FinishReason, stop_reason: str | int | None
    ) -> DecodeResult:
        self._finished = True
        return DecodeResult("".join(parts), reason, stop_reason)

    def finish(self) -> str:
        """The stream ended: release text held back for a stop string that never completed."""
        self._finished = True
        return self._jail.release()
