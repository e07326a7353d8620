"""A custom tool call's input, streamed out of the arguments the model writes as they arrive.

A custom tool is shown to the model as a function of one string, so the model writes
`{"input": "<the text, JSON-escaped>"}`, a piece at a time where the tool-call parser streams
arguments (hermes). The client wants the text itself, as `response.custom_tool_call_input.delta`
events while it is written: so the string is decoded here as far as it is certain, whole escape
sequences (both halves of a surrogate pair) and never past its closing quote.

Arguments of another shape (other keys first, not an object) give nothing until the call ends;
then `final()` is the input `custom_input` makes of them. Arguments cut short (the token limit)
are the text as far as the model wrote it.
"""

from __future__ import annotations

import json
import re

from dynamo.frontend.http.responses.tools import CUSTOM_INPUT, custom_input

#: The arguments up to the first character of the input string.
_OPENING = re.compile(r'\s*\{\s*"' + CUSTOM_INPUT + r'"\s*:\s*"')
_HEX = frozenset("0123456789abcdefABCDEF")


def _whole(raw: str, pos: int) -> tuple[int, bool]:
    """How far from `pos` a JSON string's content is whole escapes and characters, and whether
    the string's closing quote is there."""
    i, n = pos, len(raw)
    while i < n:
        c = raw[i]
        if c == '"':
            return i, True
        if c != "\\":
            i += 1
            continue
        if i + 1 >= n:
            break
        if raw[i + 1] != "u":
            i += 2
            continue
        if i + 6 > n:
            break
        digits = raw[i + 2 : i + 6]
        high = _HEX.issuperset(digits) and 0xD800 <= int(digits, 16) <= 0xDBFF
        if high and i + 12 > n:
            break  # the low half of the pair is still to come
        i += 12 if high else 6
    return i, False


class CustomInputStream:
    """Feed the arguments' pieces in; get back the input's new text each time."""

    __slots__ = ("_closed", "_pos", "_raw", "_streaming", "sent")

    def __init__(self) -> None:
        self._raw = ""
        self._pos = 0  # where the undecoded rest of the input string starts in `_raw`
        self._streaming = False  # the opening matched and the string decodes
        self._closed = False
        #: The input's text given out so far.
        self.sent = ""

    def feed(self, piece: str) -> str:
        self._raw += piece
        if self._closed:
            return ""
        if not self._streaming:
            opening = _OPENING.match(self._raw)  # fails at the first character that differs
            if opening is None:
                return ""
            self._streaming, self._pos = True, opening.end()
        end, self._closed = _whole(self._raw, self._pos)
        try:
            text = json.loads('"' + self._raw[self._pos : end] + '"')
        except ValueError:  # not a JSON string after all: the end decides
            self._streaming, self._closed = False, True
            return ""
        self._pos = end
        self.sent += text
        return text

    def final(self) -> str:
        """The call's input once its arguments are all in."""
        try:
            json.loads(self._raw)
        except ValueError:
            if self._streaming:  # cut short: the text as far as it was written
                return self.sent
        return custom_input(self._raw)
