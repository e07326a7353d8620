"""What a request asks of the engine: refusals, needed features, the guided-decoding field."""

import pytest

from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.features import Feature
from dynamo.llm.protocols.openai import ChatCompletionRequest, CompletionRequest
from dynamo.llm.requirements import (
    guided_decoding,
    needed_features,
    refuse_unsupported,
    tool_call_schema,
)

MSG = [{"role": "user", "content": "x"}]
TOOLS = [
    {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "b"}},
]


def chat(**kw) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": MSG, **kw})


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"response_format": {"type": "json_object"}}, {"json": {"type": "object"}}),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "n", "schema": {"type": "array"}, "strict": True},
                }
            },
            {"json": {"type": "array"}},
        ),
        ({"response_format": {"type": "text"}}, None),
        ({"guided_regex": "a+"}, {"regex": "a+"}),
        ({"nvext": {"guided_choice": ["x", "y"]}}, {"choice": ["x", "y"]}),
        ({"guided_json": '{"type": "object"}'}, {"json": {"type": "object"}}),
        (
            {"nvext": {"guided_grammar": "root ::= 'a'", "guided_decoding_backend": "xgrammar"}},
            {"grammar": "root ::= 'a'", "backend": "xgrammar"},
        ),
    ],
)
def test_structured_output_spellings_become_one_wire_field(kw, expected):
    assert guided_decoding(chat(**kw)) == expected


@pytest.mark.parametrize(
    "kw",
    [
        {"guided_json": "{not json"},
        {"guided_json": 5},
        {"guided_choice": []},
        {"guided_regex": "a", "nvext": {"guided_choice": ["a"]}},
    ],
)
def test_bad_structured_output_is_a_400(kw):
    with pytest.raises(InvalidRequestError):
        guided_decoding(chat(**kw))


def test_tool_choice_schemas():
    named = chat(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "b"}})
    assert tool_call_schema(named) == {"type": "object"}
    required = chat(tools=TOOLS, tool_choice="required", parallel_tool_calls=False)
    schema = tool_call_schema(required)
    assert schema["maxItems"] == 1
    assert [o["properties"]["name"]["enum"] for o in schema["items"]["anyOf"]] == [["a"], ["b"]]
    assert tool_call_schema(chat(tools=TOOLS)) is None


def test_needed_features_name_the_field_as_sent():
    needed = needed_features(chat(logprobs=True, top_k=3, nvext={"min_p": 0.1}, seed=1))
    assert needed[Feature.LOGPROBS] == "logprobs"
    assert needed[Feature.TOP_K] == "top_k"
    assert needed[Feature.MIN_P] == "nvext.min_p"
    assert needed[Feature.SEED] == "seed"
    assert Feature.STOP not in needed_features(chat(stop=["x"]))
    assert needed_features(chat(stop=["x"]), detokenized=False)[Feature.STOP] == "stop"


def test_completion_features():
    req = CompletionRequest(model="m", prompt="x", logprobs=2, echo=True, best_of=3)
    needed = needed_features(req)
    assert needed[Feature.LOGPROBS] == "logprobs"
    assert needed[Feature.PROMPT_LOGPROBS] == "echo"
    tokens = CompletionRequest(model="m", prompt=[1, 2])
    assert needed_features(tokens, detokenized=False)[Feature.TOKEN_PROMPT] == "prompt"


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"store": True}, "store"),
        ({"modalities": ["audio"]}, "modalities"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"audio": {"voice": "x"}}, "audio"),
        ({"verbosity": "low"}, "verbosity"),
    ],
)
def test_refused_everywhere(kw, param):
    with pytest.raises(InvalidRequestError) as e:
        refuse_unsupported(chat(**kw))
    assert e.value.param == param
    refuse_unsupported(chat(store=False, modalities=["text"]))


def test_text_engines_need_tools_for_earlier_tool_turns():
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c", "content": "42"},
            ],
        }
    )
    assert needed_features(req, detokenized=False)[Feature.TOOLS] == "messages"
    assert Feature.TOOLS not in needed_features(req)
