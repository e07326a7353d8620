"""Tool calls out of a model's text, streaming: `hermes`, `llama3_json`, `mistral`, `pythonic`.

A parser is fed the answer's text in whatever pieces it arrives and returns, each time, the text
that is plain content and the tool-call deltas found so far. Text that may be the start of
tool-call markup is held back until it is known not to be, so markup never reaches `content`
however the tokens split it (the decoder never splits a character, so neither does this).

Tool calls come out in OpenAI's incremental shape: a call's first delta carries its `index`, `id`
and `name` (with empty arguments) as soon as they are known, later ones its arguments: as they
stream in where the format allows it (`hermes`: the arguments object's text, exactly, up to its
closing brace), else whole when the call is complete. A block that does not parse as tool calls
is given back as content, as vLLM does.

    parser = tool_call_parser("hermes")
    for piece in pieces:
        out = parser.feed(piece)     # out.content, out.calls
    out = parser.finish()
"""

from __future__ import annotations

import ast
import json
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dynamo.llm.parsers._holdback import find_first, partial_suffix


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of one tool call, as OpenAI streams it in `delta.tool_calls`."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""

    def to_openai(self) -> dict[str, Any]:
        function: dict[str, Any] = {"arguments": self.arguments}
        if self.name is not None:
            function = {"name": self.name, "arguments": self.arguments}
        out: dict[str, Any] = {"index": self.index, "function": function}
        if self.id is not None:
            out = {"index": self.index, "id": self.id, "type": "function", "function": function}
        return out


@dataclass(slots=True)
class Parsed:
    """What one `feed` (or `finish`) produced."""

    content: str = ""
    calls: list[ToolCallDelta] = field(default_factory=list)


def merge_calls(deltas: list[ToolCallDelta]) -> list[ToolCallDelta]:
    """Deltas of the same call folded into one (for a unary answer, or one stream chunk)."""
    merged: dict[int, ToolCallDelta] = {}
    for d in deltas:
        m = merged.get(d.index)
        if m is None:
            merged[d.index] = ToolCallDelta(d.index, d.id, d.name, d.arguments)
        else:
            m.id = m.id or d.id
            m.name = m.name or d.name
            m.arguments += d.arguments
    return list(merged.values())


class _ObjectText:
    """Follows a JSON object's text as it arrives, to its closing brace and no further."""

    __slots__ = ("depth", "end", "escaped", "in_string", "pos", "start")

    def __init__(self, start: int) -> None:
        self.start = self.pos = start  # `start` is the object's "{"
        self.depth = 0
        self.in_string = self.escaped = False
        self.end: int | None = None

    def advance(self, text: str) -> str:
        """The object's text in `text` (which only grows) since the last call."""
        i, n = self.pos, len(text)
        while i < n and self.end is None:
            c = text[i]
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif c == "\\":
                    self.escaped = True
                elif c == '"':
                    self.in_string = False
            elif c == '"':
                self.in_string = True
            elif c in "{[":
                self.depth += 1
            elif c in "}]":
                self.depth -= 1
                if self.depth == 0:
                    self.end = i + 1
            i += 1
        piece, self.pos = text[self.pos : i], i
        return piece


class ToolCallParser:
    """Base of the markup parsers: where a tool-call block starts and ends, and how it decodes."""

    name: ClassVar[str]
    #: Markup that opens a tool-call block.
    starts: ClassVar[tuple[str, ...]]
    #: Of `starts`, those that are part of the block's own text (a JSON `{`, a Python `[`).
    inclusive: ClassVar[frozenset[str]] = frozenset()
    #: Markup that closes a block; None: the block runs to the end of the answer.
    end: ClassVar[str | None] = None
    #: The block can only open the answer (after whitespace): text first means no tool calls.
    at_start_only: ClassVar[bool] = False

    def __init__(self) -> None:
        self._buf = ""
        self._in_block = False
        self._opening = ""  # the markup (and leading whitespace) that opened the current block
        self._block = ""
        self._passthrough = False
        self._next_index = 0
        self._named: ToolCallDelta | None = None  # a call whose name went out ahead of its block
        self._arguments: _ObjectText | None = None  # its arguments, streaming

    # -- what each format defines ---------------------------------------------------------------

    def decode(self, block: str) -> list[tuple[str, str]]:
        """The (name, JSON arguments) of each call in a complete block; ValueError if malformed."""
        raise NotImplementedError

    def early_name(self, block: str) -> str | None:
        """The name of the block's call, if it is sure to be one, before the block completes."""
        return None

    def early_arguments(self, block: str) -> int | None:
        """Where the call's arguments object starts in an incomplete block, to stream it."""
        return None

    def new_id(self) -> str:
        return f"call_{secrets.token_hex(12)}"

    # -- streaming --------------------------------------------------------------------------------

    def feed(self, text: str) -> Parsed:
        out = Parsed()
        self._buf += text
        while self._buf:
            if not self._in_block:
                if not self._scan_text(out):
                    break
            elif not self._scan_block(out):
                break
        return out

    def finish(self) -> Parsed:
        """The answer ended: an unclosed block is decoded if it can be, else given back as text."""
        out = Parsed()
        if self._in_block:
            self._block += self._buf
            self._buf = ""
            self._close_block(self._block, out, closing="")
        self._emit_text(out, self._buf)
        self._buf = ""
        return out

    def _emit_text(self, out: Parsed, text: str) -> None:
        """Plain text to content; whitespace between or after tool calls is dropped."""
        if self._next_index and not text.strip():
            return
        out.content += text

    def _scan_text(self, out: Parsed) -> bool:
        """Move plain text to `out`; True when a block opened and scanning should go on."""
        buf = self._buf
        if self._passthrough:
            out.content += buf
            self._buf = ""
            return False
        if self.at_start_only:
            stripped = buf.lstrip()
            if not stripped:
                return False  # only whitespace so far: it may precede a block
            opener = next((s for s in self.starts if stripped.startswith(s)), None)
            if opener is None:
                if any(s.startswith(stripped) for s in self.starts):
                    return False
                self._passthrough = True
                out.content += buf
                self._buf = ""
                return False
            cut = len(buf) - len(stripped) + len(opener)
            self._open(buf[:cut], opener, buf[cut:])
            return True
        hit = find_first(buf, self.starts)
        if hit is None:
            keep = partial_suffix(buf, self.starts)
            self._emit_text(out, buf[: len(buf) - keep])
            self._buf = buf[len(buf) - keep :]
            return False
        at, opener = hit
        self._emit_text(out, buf[:at])
        self._open(opener, opener, buf[at + len(opener) :])
        return True

    def _open(self, opening: str, opener: str, rest: str) -> None:
        self._in_block = True
        inclusive = opener in self.inclusive
        self._opening = opening[: -len(opener)] if inclusive else opening
        self._block = opener if inclusive else ""
        self._buf = rest

    def _scan_block(self, out: Parsed) -> bool:
        """Collect the block; True when it closed and scanning should go on after it."""
        combined = self._block + self._buf
        end = self.end
        at = -1 if end is None else combined.find(end)
        if at == -1:
            self._block, self._buf = combined, ""
            self._announce(out)
            return False
        assert end is not None
        self._buf = combined[at + len(end) :]
        self._close_block(combined[:at], out, closing=end)
        return True

    def _announce(self, out: Parsed) -> None:
        """Send a call's id and name ahead of its arguments, once the block shows them."""
        if self._named is None:
            name = self.early_name(self._block)
            if name is not None:
                self._named = ToolCallDelta(self._next_index, self.new_id(), name, "")
                out.calls.append(self._named)
        if self._named is not None and self._arguments is None:
            start = self.early_arguments(self._block)
            if start is not None:
                self._arguments = _ObjectText(start)
        if self._arguments is not None:
            piece = self._arguments.advance(self._block)
            if piece:
                out.calls.append(ToolCallDelta(self._named.index, arguments=piece))  # type: ignore[union-attr]

    def _close_block(self, block: str, out: Parsed, closing: str) -> None:
        self._in_block = False
        named, self._named = self._named, None
        streamed, self._arguments = self._arguments, None
        try:
            calls = self.decode(block)
        except (ValueError, SyntaxError, TypeError, KeyError):
            calls = []
        if streamed is not None and named is not None:
            # Part of the arguments went out: the rest, if the block is the call it promised.
            rest = streamed.advance(block)
            raw = block[streamed.start : streamed.end] if streamed.end is not None else None
            promised = len(calls) == 1 and calls[0][0] == named.name and raw is not None
            if promised and json.loads(raw) == json.loads(calls[0][1]):  # type: ignore[arg-type]
                if rest:
                    out.calls.append(ToolCallDelta(named.index, arguments=rest))
                self._next_index += 1
                return
            self._next_index += 1  # malformed after all: its text is given back as content
            out.content += self._opening + block + closing
            return
        if not calls:
            if named is not None:  # announced but malformed: close it with empty arguments
                out.calls.append(ToolCallDelta(named.index, arguments="{}"))
                self._next_index += 1
            out.content += self._opening + block + closing
            return
        for n, (name, arguments) in enumerate(calls):
            if n == 0 and named is not None and named.name == name:
                out.calls.append(ToolCallDelta(named.index, arguments=arguments))
            else:
                out.calls.append(ToolCallDelta(self._next_index, self.new_id(), name, ""))
                out.calls.append(ToolCallDelta(self._next_index, arguments=arguments))
            self._next_index += 1


def _arguments_json(value: Any) -> str:
    """A call's arguments as the JSON string OpenAI sends (models write objects or strings)."""
    if isinstance(value, str):
        json.loads(value)  # must be JSON already
        return value
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise ValueError("tool call arguments must be an object")
    return json.dumps(value, ensure_ascii=False)


def _call_from_object(obj: Any, *arg_keys: str) -> tuple[str, str]:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise ValueError("a tool call is an object with a name")
    key = next((k for k in arg_keys if k in obj), None)
    return obj["name"], _arguments_json(obj.get(key) if key else None)


def _json_values(text: str, separators: str = "") -> list[Any]:
    """Every JSON value in `text`, in order, with whitespace and `separators` between them."""
    decoder = json.JSONDecoder()
    values, i, n = [], 0, len(text)
    while True:
        while i < n and (text[i].isspace() or text[i] in separators):
            i += 1
        if i >= n:
            return values
        value, i = decoder.raw_decode(text, i)
        values.append(value)


_NAME_THEN_ARGS = re.compile(
    r'^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)+)"\s*,\s*"(?:arguments|parameters)"\s*:'
)


class HermesParser(ToolCallParser):
    """`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (Hermes, Qwen 2.5 / 3)."""

    name = "hermes"
    starts = ("<tool_call>",)
    end = "</tool_call>"

    def decode(self, block: str) -> list[tuple[str, str]]:
        return [_call_from_object(v, "arguments", "parameters") for v in _json_values(block)]

    def early_name(self, block: str) -> str | None:
        m = _NAME_THEN_ARGS.match(block)
        return json.loads(f'"{m.group(1)}"') if m else None

    def early_arguments(self, block: str) -> int | None:
        m = _NAME_THEN_ARGS.match(block)
        if m is None:
            return None
        rest = block[m.end() :]
        start = m.end() + len(rest) - len(rest.lstrip())
        return start if block[start : start + 1] == "{" else None


class Llama3JsonParser(ToolCallParser):
    """Llama 3.1 / 3.2 JSON calls: the answer is `{"name": ..., "parameters": {...}}` (optionally
    after `<|python_tag|>`, several separated by `;`)."""

    name = "llama3_json"
    starts = ("<|python_tag|>", "{")
    inclusive = frozenset({"{"})
    at_start_only = True

    def decode(self, block: str) -> list[tuple[str, str]]:
        return [_call_from_object(v, "parameters", "arguments") for v in _json_values(block, ";")]


class MistralParser(ToolCallParser):
    """`[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`, or the newer
    `[TOOL_CALLS]name[ARGS]{...}` per call (Mistral)."""

    name = "mistral"
    starts = ("[TOOL_CALLS]",)

    def decode(self, block: str) -> list[tuple[str, str]]:
        if "[ARGS]" in block:
            calls = []
            for part in block.split("[TOOL_CALLS]"):
                if part.strip():
                    name, args = part.split("[ARGS]", 1)
                    calls.append((name.strip(), _arguments_json(json.loads(args))))
            return calls
        values = _json_values(block)
        if len(values) != 1 or not isinstance(values[0], list):
            raise ValueError("mistral tool calls are one JSON list")
        return [_call_from_object(v, "arguments") for v in values[0]]

    def new_id(self) -> str:
        # Mistral's templates require nine alphanumeric characters.
        return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(9))


class PythonicParser(ToolCallParser):
    """`[get_weather(city="Paris"), now()]` (Llama 3.2 / 4 pythonic), optionally inside
    `<|python_start|>` ... `<|python_end|>`."""

    name = "pythonic"
    starts = ("<|python_start|>", "[")
    inclusive = frozenset({"["})
    at_start_only = True

    def decode(self, block: str) -> list[tuple[str, str]]:
        block = block.replace("<|python_end|>", "").strip()
        tree = ast.parse(block, mode="eval").body
        if not isinstance(tree, ast.List):
            raise ValueError("pythonic tool calls are a list of calls")
        calls = []
        for node in tree.elts:
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.args:
                raise ValueError("each pythonic tool call is name(keyword=value, ...)")
            args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
            calls.append((node.func.id, json.dumps(args, ensure_ascii=False)))
        return calls


PARSERS: dict[str, type[ToolCallParser]] = {
    p.name: p for p in (HermesParser, Llama3JsonParser, MistralParser, PythonicParser)
}

# Markup in a chat template that says which format the model writes its calls in.
_TEMPLATE_MARKERS = {
    "hermes": ("<tool_call>",),
    "mistral": ("[TOOL_CALLS]",),
    "pythonic": ("<|python_start|>",),
    "llama3_json": ("<|python_tag|>",),
}


def tool_call_parser(name: str) -> ToolCallParser:
    """A fresh parser for one answer; `name` is one of `PARSERS`."""
    try:
        return PARSERS[name]()
    except KeyError:
        raise ValueError(
            f"unknown tool-call parser '{name}'; choose one of: {', '.join(sorted(PARSERS))}"
        ) from None


def detect_tool_call_parser(chat_template: str | dict[str, str] | None) -> str | None:
    """The parser a chat template's markup points to, when exactly one does; else None."""
    if not chat_template:
        return None
    text = "\n".join(chat_template.values()) if isinstance(chat_template, dict) else chat_template
    found = [name for name, marks in _TEMPLATE_MARKERS.items() if any(m in text for m in marks)]
    if found == ["pythonic", "llama3_json"] or found == ["llama3_json", "pythonic"]:
        return None
    return found[0] if len(found) == 1 else None


def forced_calls(text: str, tool_choice: Any) -> list[ToolCallDelta]:
    """The calls in an answer constrained by `requirements.tool_call_schema`: the named
    function's arguments object, or (for `required`) a list of `{"name", "parameters"}`."""
    value = json.loads(text)
    if isinstance(tool_choice, str):
        pairs = [_call_from_object(v, "parameters", "arguments") for v in value]
    else:
        pairs = [(tool_choice.function.name, _arguments_json(value))]
    return [
        ToolCallDelta(i, f"call_{secrets.token_hex(12)}", name, arguments)
        for i, (name, arguments) in enumerate(pairs)
    ]
