"""guided_decoding as GBNF grammars, without loading a model (llama.cpp parses them in
test_engine's structured-output tests)."""

from __future__ import annotations

import pytest

from dynamo.engines.llamacpp._guided import grammar_for
from dynamo.llm.errors import InvalidRequestError


def test_json_schema_becomes_its_grammar():
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    gbnf = grammar_for({"json": schema})
    assert gbnf.startswith("char ::=") or "root ::=" in gbnf
    assert '"\\"name\\""' in gbnf
    assert grammar_for({"json": '{"type": "object"}'}) == grammar_for({"json": {"type": "object"}})


def test_regex_is_a_raw_rule_for_the_whole_output():
    gbnf = grammar_for({"regex": "[0-9]{3}"})
    assert "root ::=" in gbnf and '"\\""' not in gbnf.split("root ::=")[1].splitlines()[0]
    assert grammar_for({"regex": "^[0-9]{3}$"}) == gbnf


def test_choice_is_an_alternation_of_literals():
    assert grammar_for({"choice": ["yes", 'no "way"']}) == 'root ::= "yes" | "no \\"way\\""'


def test_grammar_passes_as_written():
    assert grammar_for({"grammar": 'root ::= "a"', "backend": "llama.cpp"}) == 'root ::= "a"'


@pytest.mark.parametrize(
    "guided",
    [
        {"json": {"type": "object"}, "regex": "a"},
        {},
        {"choice": []},
        {"choice": ["a", 3]},
        {"grammar": "  "},
        {"regex": "(?=a)b"},
        {"json": "{not json"},
        {"json": {"type": "tuple-of-dreams"}},
        {"json": {"type": "object"}, "backend": "xgrammar"},
        {"json": {"type": "object"}, "whitespace_pattern": " "},
        {"structural_tag": {"x": 1}},
    ],
)
def test_what_cannot_be_honoured_is_a_400(guided):
    with pytest.raises(InvalidRequestError) as e:
        grammar_for(guided)
    assert e.value.param == "guided_decoding"
