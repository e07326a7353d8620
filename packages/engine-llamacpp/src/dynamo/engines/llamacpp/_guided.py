"""Structured output: a request's `guided_decoding` as a GBNF grammar for llama.cpp's grammar
sampler, using llama-cpp-python's own converters (`llama_cpp.llama_grammar`, a port of
llama.cpp's json-schema-to-grammar).

- `json`: the JSON schema's grammar (`{"type": "object"}` for OpenAI's `json_object`);
- `regex`: the pattern as a raw rule (the whole output matches it);
- `choice`: one of the given strings, exactly;
- `grammar`: a GBNF grammar, as written (root rule `root`).

Anything that cannot be turned into a grammar is a 400 naming `guided_decoding`; so are the
options this engine cannot honour (another `backend`, `whitespace_pattern`, `structural_tag`).
"""

from __future__ import annotations

import json
from typing import Any

from dynamo.llm.errors import InvalidRequestError

_PARAM = "guided_decoding"
#: Backend names that mean this engine's own grammar sampler.
_BACKENDS = frozenset({"llama.cpp", "llamacpp", "gbnf", "auto"})


def _converter(raw_pattern: bool = False) -> Any:
    from llama_cpp.llama_grammar import SchemaConverter

    return SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=raw_pattern)


def _from_schema(schema: Any, raw_pattern: bool = False) -> str:
    converter = _converter(raw_pattern)
    schema = converter.resolve_refs(schema, "request")
    converter.visit(schema, "")
    return converter.format_grammar()


def _kind(guided: dict[str, Any]) -> str:
    kinds = [k for k in ("json", "regex", "choice", "grammar") if guided.get(k) is not None]
    if guided.get("structural_tag") is not None:
        raise InvalidRequestError("out=llamacpp does not take structural_tag", param=_PARAM)
    if len(kinds) != 1:
        raise InvalidRequestError(
            "guided decoding takes exactly one of json, regex, choice, grammar", param=_PARAM
        )
    return kinds[0]


def grammar_for(guided: dict[str, Any]) -> str:
    """The GBNF grammar (root rule `root`) for a `guided_decoding` object."""
    backend = guided.get("backend")
    if backend is not None and backend not in _BACKENDS:
        raise InvalidRequestError(
            f"out=llamacpp constrains output with llama.cpp's grammars, not backend {backend!r}",
            param=_PARAM,
        )
    if guided.get("whitespace_pattern") is not None:
        raise InvalidRequestError("out=llamacpp does not take whitespace_pattern", param=_PARAM)
    kind = _kind(guided)
    value = guided[kind]
    try:
        if kind == "json":
            schema = json.loads(value) if isinstance(value, str) else value
            return _from_schema(schema)
        if kind == "regex":
            pattern = value if value.startswith("^") else f"^{value}"
            pattern = pattern if pattern.endswith("$") else f"{pattern}$"
            return _from_schema({"type": "string", "pattern": pattern}, raw_pattern=True)
        if kind == "choice":
            if not value or not all(isinstance(c, str) and c for c in value):
                raise ValueError("choice must be a list of non-empty strings")
            literals = " | ".join(_converter()._format_literal(c) for c in value)
            return f"root ::= {literals}"
        if not isinstance(value, str) or not value.strip():
            raise ValueError("grammar must be a non-empty GBNF string")
        return value
    except InvalidRequestError:
        raise
    except (AssertionError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
        raise InvalidRequestError(
            f"guided_decoding.{kind} cannot be turned into a grammar: {e}", param=_PARAM
        ) from None
