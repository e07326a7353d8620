"""Chat templates rendered exactly as transformers' `apply_chat_template` renders them.

Same jinja2 sandbox, same options (trim_blocks, lstrip_blocks, loopcontrols, `{% generation %}`),
same helpers (`tojson` without HTML escaping, `raise_exception`, `strftime_now`, `dict`,
`namespace`), same variables (messages, tools, documents, add_generation_prompt and the special
tokens), and the same input clean-up transformers 5 does before rendering: message objects become
plain dicts, keys whose value is None are dropped (OpenAI clients send `content: null`,
`tool_calls: null`, which templates would print as "None"), and a message's reasoning is offered
under all the names templates read it by. Upstream Dynamo uses minijinja and its users keep hitting
differences (#9608, #6294).

Two deliberate differences: a model with no chat template gets a plain one (each message's content
on its own line) where transformers raises, so base models still answer chat requests; and a
template that reads `content` as a string (most text models') gets a message's list of text parts
(`[{"type": "text", "text": "Hi"}]`, what LangChain and many SDKs send) joined into one string,
as vLLM does (its "string" content format), where transformers would fail adding a list to a str.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dynamo.llm.errors import TemplateError
from dynamo.llm.model_card import ModelDeploymentCard

_DEFAULT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}\n{% endfor %}"

# Variables the renderer sets itself; request arguments may not replace them.
_RESERVED = frozenset({"messages", "tools", "add_generation_prompt"})
# What a template's own expressions raise on input it does not expect.
_TEMPLATE_RUNTIME_ERRORS = (
    TypeError,
    ValueError,
    KeyError,
    IndexError,
    AttributeError,
    ZeroDivisionError,
    OverflowError,
)

# Names a message's reasoning travels under; templates read the first (gpt-oss reads `thinking`).
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


class _Generation(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` marks assistant text for training masks; render the body."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        return caller()


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    x: Any,
    ensure_ascii: bool = False,
    indent: Any = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _TemplateDict:
    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict:
        return dict.fromkeys(*args, **kwargs)


class _Namespace(jinja2.utils.Namespace):
    """jinja's namespace, refusing dunder attributes as transformers' sandbox does."""

    def __init__(*args: Any, **kwargs: Any) -> None:
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"templates cannot set underscore attributes ({name!r})"
            )


def _names_content(node: jinja2.nodes.Node) -> bool:
    """`x.content` or `x['content']`, maybe through filters (`x['content'] | selectattr(...)`)."""
    while isinstance(node, jinja2.nodes.Filter | jinja2.nodes.Test) and node.node is not None:
        node = node.node
    if isinstance(node, jinja2.nodes.Getattr):
        return node.attr == "content"
    if isinstance(node, jinja2.nodes.Getitem):
        return isinstance(node.arg, jinja2.nodes.Const) and node.arg.value == "content"
    return False


@lru_cache(maxsize=64)
def takes_content_parts(source: str) -> bool:
    """Whether a template loops over a message's content: it takes OpenAI's lists of parts
    (vLLM's "openai" content format). Otherwise it expects a string ("string" format)."""
    try:
        tree = jinja2.Environment(extensions=[_Generation, jinja2.ext.loopcontrols]).parse(source)
    except jinja2.TemplateSyntaxError:
        return False  # compile_template reports it
    return any(_names_content(loop.iter) for loop in tree.find_all(jinja2.nodes.For))


def flatten_text_parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each message whose content is a list of text parts, with those texts joined by newlines
    (as vLLM joins them for a string-format template). Other parts must have been refused."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            texts = [p["text"] for p in content if isinstance(p, dict) and p.get("type") == "text"]
            message = {**message, "content": "\n".join(texts)}
        out.append(message)
    return out


@lru_cache(maxsize=64)
def compile_template(source: str) -> jinja2.Template:
    """Compile once per distinct template text."""
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["dict"] = _TemplateDict()
    env.globals["namespace"] = _Namespace
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"the model's chat template does not compile: {e}") from None


def _plain(value: Any) -> Any:
    """Template data rebuilt from plain JSON types, as transformers' `_plain_template_data` does.

    The sandbox only guards attribute access; rebuilding from str/int/float/dict/list means no object
    with unexpected methods (an enum, a pydantic model) ever reaches the template.
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return _plain(dump())
    return f"<{type(value).__name__}>"


def normalize_messages(messages: list[Any]) -> list[dict[str, Any]]:
    """Messages as transformers hands them to a template: plain dicts, no None values, reasoning aliased."""
    out = []
    for message in _plain(list(messages)):
        if not isinstance(message, dict):
            raise TemplateError(f"chat messages must be objects, got {message!r}")
        message = {k: v for k, v in message.items() if v is not None}
        reasoning = next((message[k] for k in _REASONING_FIELDS if k in message), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        out.append(message)
    return out


class PromptFormatter:
    """Renders a conversation into the prompt text for one model."""

    def __init__(self, card: ModelDeploymentCard):
        self.card = card
        self._specials = {k: v for k, v in card.special_tokens().items() if v is not None}

    def _source(self, tools: list[dict] | None) -> str:
        template = self.card.chat_template
        if isinstance(template, dict):
            if tools is not None and "tool_use" in template:
                return template["tool_use"]
            if "default" in template:
                return template["default"]
            raise TemplateError("the model has named chat templates but no 'default' one")
        return template or _DEFAULT_TEMPLATE

    def render(
        self,
        messages: list[dict[str, Any]],
        /,
        *,
        tools: list[Any] | None = None,
        add_generation_prompt: bool = True,
        **template_kwargs: Any,
    ) -> str:
        """The prompt for `messages`, byte for byte what `apply_chat_template(tokenize=False)` gives.

        `template_kwargs` (chat_template_kwargs in a request: `enable_thinking`, `date_string`,
        `documents`, ...) reach the template as variables and override the special tokens of the
        same name. A template that fails on the conversation it is given (a role it refuses, a
        list where it adds strings) raises `TemplateError`: the request is at fault, not us.
        """
        reserved = _RESERVED.intersection(template_kwargs)
        if reserved:
            raise TemplateError(f"chat template arguments cannot set {', '.join(sorted(reserved))}")
        documents = template_kwargs.pop("documents", None)
        source = self._source(tools)
        template = compile_template(source)
        plain_messages = normalize_messages(messages)
        if not takes_content_parts(source):
            plain_messages = flatten_text_parts(plain_messages)
        try:
            return template.render(
                messages=plain_messages,
                tools=_plain(tools),
                documents=_plain(documents),
                add_generation_prompt=add_generation_prompt,
                **_plain({**self._specials, **template_kwargs}),
            )
        except jinja2.TemplateError as e:
            raise TemplateError(str(e)) from None
        except _TEMPLATE_RUNTIME_ERRORS as e:
            raise TemplateError(f"the chat template failed on this conversation: {e!r}") from None
