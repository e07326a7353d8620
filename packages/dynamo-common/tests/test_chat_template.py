"""Our renderer against transformers' `apply_chat_template`, byte for byte, on real templates."""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerFast

from dynamo.llm.chat_template import PromptFormatter
from dynamo.llm.errors import TemplateError
from dynamo.llm.model_card import ModelDeploymentCard

SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city — in °C",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]

CONVERSATIONS = {
    "single": [{"role": "user", "content": "Hello!"}],
    "system": [
        {"role": "system", "content": "Be brief. Ünïcødé ✓"},
        {"role": "user", "content": "Hi"},
    ],
    "multi_turn": [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "  And 3+3?  "},
    ],
}


def formatter(card: ModelDeploymentCard) -> PromptFormatter:
    return PromptFormatter(card)


def transformers_render(card: ModelDeploymentCard, messages, **kwargs) -> str:
    tok = PreTrainedTokenizerFast(
        tokenizer_object=card.tokenizer() if card.has_tokenizer() else _any_tokenizer(),
        chat_template=card.chat_template,
        **{k: v for k, v in card.special_tokens().items() if v is not None},
    )
    return tok.apply_chat_template(messages, tokenize=False, **kwargs)


def _any_tokenizer():
    from tokenizers import Tokenizer, models

    return Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>"))


def template_card(source: str) -> ModelDeploymentCard:
    return ModelDeploymentCard(display_name="t", chat_template=source, **SPECIALS)


@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_smollm2_template_matches_transformers(smollm2_card, conversation, add_generation_prompt):
    messages = CONVERSATIONS[conversation]
    ours = formatter(smollm2_card).render(messages, add_generation_prompt=add_generation_prompt)
    theirs = transformers_render(
        smollm2_card, messages, add_generation_prompt=add_generation_prompt
    )
    assert ours == theirs


@pytest.mark.parametrize("name", ["llama3.1.jinja", "mistral.jinja", "qwen2.5.jinja"])
@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
def test_real_world_templates_match_transformers(template_source, name, conversation):
    card = template_card(template_source(name))
    messages = CONVERSATIONS[conversation]
    assert formatter(card).render(messages) == transformers_render(
        card, messages, add_generation_prompt=True
    )


@pytest.mark.parametrize("name", ["llama3.1.jinja", "qwen2.5.jinja"])
def test_tools_and_tojson_match_transformers(template_source, name):
    card = template_card(template_source(name))
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    ours = formatter(card).render(messages, tools=TOOLS)
    assert ours == transformers_render(card, messages, tools=TOOLS, add_generation_prompt=True)
    assert "°C" in ours  # tojson does not escape non-ASCII, as transformers' filter does not


TOOL_CONVERSATION = [
    {"role": "system", "content": "You can call tools."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,  # what OpenAI clients send beside tool_calls
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
            }
        ],
    },
    {"role": "tool", "content": '{"temp": "21 °C"}', "tool_call_id": "call_1"},
]


@pytest.mark.parametrize("name", ["llama3.1.jinja", "qwen2.5.jinja"])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_tool_call_round_trip_matches_transformers(template_source, name, add_generation_prompt):
    card = template_card(template_source(name))
    ours = formatter(card).render(
        TOOL_CONVERSATION, tools=TOOLS, add_generation_prompt=add_generation_prompt
    )
    theirs = transformers_render(
        card, TOOL_CONVERSATION, tools=TOOLS, add_generation_prompt=add_generation_prompt
    )
    assert ours == theirs
    assert "None" not in ours  # `content: null` is dropped, never printed


def test_none_values_are_dropped_as_transformers_drops_them():
    card = template_card(
        "{% for m in messages %}{{ m.role }}:{{ m.content }}:{{ 'name' in m }};{% endfor %}"
    )
    messages = [
        {"role": "user", "content": "hi", "name": None},
        {"role": "assistant", "content": None},
    ]
    ours = formatter(card).render(messages)
    assert ours == "user:hi:False;assistant::False;"
    assert ours == transformers_render(card, messages)


def test_reasoning_is_offered_under_every_name_templates_read():
    card = template_card(
        "{% for m in messages %}[{{ m.reasoning_content }}|{{ m.thinking }}|{{ m.reasoning }}]"
        "{% endfor %}"
    )
    messages = [
        {"role": "assistant", "content": "a", "reasoning": "r1"},
        {"role": "assistant", "content": "b", "thinking": "r2"},
        {"role": "assistant", "content": "c"},
    ]
    ours = formatter(card).render(messages)
    assert ours == "[r1|r1|r1][r2|r2|][||]"
    assert ours == transformers_render(card, messages)


def test_pydantic_messages_and_tools_render_as_plain_data():
    from pydantic import BaseModel

    class Message(BaseModel):
        role: str
        content: str | None = None

    card = template_card("{% for m in messages %}{{ m | tojson }}{% endfor %}{{ tools | tojson }}")
    messages = [Message(role="user", content="hé"), Message(role="assistant")]
    assert formatter(card).render(messages, tools=TOOLS) == transformers_render(
        card, messages, tools=TOOLS
    )


def test_template_kwargs_reach_the_template(template_source):
    card = template_card(template_source("llama3.1.jinja"))
    messages = CONVERSATIONS["single"]
    ours = formatter(card).render(messages, date_string="01 Jan 2030")
    assert "Today Date: 01 Jan 2030" in ours
    assert ours == transformers_render(
        card, messages, add_generation_prompt=True, date_string="01 Jan 2030"
    )


def test_default_system_prompt_is_rendered(template_source, smollm2_card):
    assert "You are Qwen" in formatter(template_card(template_source("qwen2.5.jinja"))).render(
        CONVERSATIONS["single"]
    )
    assert "named SmolLM" in formatter(smollm2_card).render(CONVERSATIONS["single"])


def test_raise_exception_becomes_template_error(template_source):
    card = template_card(template_source("mistral.jinja"))
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(TemplateError, match="roles must alternate"):
        formatter(card).render(bad)
    with pytest.raises(Exception, match="roles must alternate"):
        transformers_render(card, bad)


def test_named_templates_pick_tool_use_when_tools_are_given():
    card = template_card("")
    card.chat_template = {"default": "D{{ messages|length }}", "tool_use": "T{{ tools|length }}"}
    assert formatter(card).render(CONVERSATIONS["single"]) == "D1"
    assert formatter(card).render(CONVERSATIONS["single"], tools=TOOLS) == "T1"
    # transformers picks tool_use whenever tools is given, even an empty list
    assert formatter(card).render(CONVERSATIONS["single"], tools=[]) == "T0"
    assert transformers_render(card, CONVERSATIONS["single"], tools=[]) == "T0"


def test_named_templates_without_default_refuse_plain_chats():
    card = template_card("")
    card.chat_template = {"tool_use": "T"}
    with pytest.raises(TemplateError, match="default"):
        formatter(card).render(CONVERSATIONS["single"])


def test_generation_tags_render_their_body():
    card = template_card(
        "{% for m in messages %}{% generation %}[{{ m.content }}]{% endgeneration %}{% endfor %}"
    )
    assert formatter(card).render(CONVERSATIONS["multi_turn"]) == "[What is 2+2?][4][  And 3+3?  ]"


def test_documents_reach_the_template_as_transformers_passes_them():
    card = template_card("{% for d in documents %}[{{ d.title }}: {{ d.text }}]{% endfor %}")
    docs = [{"title": "A", "text": "alpha"}, {"title": "B", "text": "beta"}]
    ours = formatter(card).render(CONVERSATIONS["single"], documents=docs)
    assert ours == "[A: alpha][B: beta]"
    assert ours == transformers_render(card, CONVERSATIONS["single"], documents=docs)


def test_request_arguments_cannot_replace_the_conversation():
    card = template_card("{{ messages | length }}")
    request_kwargs = {"messages": [], "enable_thinking": False}  # chat_template_kwargs
    with pytest.raises(TemplateError, match="messages"):
        formatter(card).render(CONVERSATIONS["single"], **request_kwargs)


def test_template_failing_on_unexpected_input_is_a_template_error(template_source):
    card = template_card(template_source("mistral.jinja"))
    odd = [{"role": "user", "content": {"not": "a string"}}]
    with pytest.raises(TemplateError, match="failed on this conversation"):
        formatter(card).render(odd)
    # Text parts are not unexpected: a string template gets them joined (issue 18 item 10).
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert formatter(card).render(parts) == formatter(card).render(
        [{"role": "user", "content": "hi"}]
    )


def test_sandbox_refuses_unsafe_attribute_access():
    card = template_card("{{ messages.__class__.__mro__ }}")
    with pytest.raises(TemplateError):
        formatter(card).render(CONVERSATIONS["single"])


def test_string_templates_and_part_templates_are_told_apart():
    from dynamo.llm.chat_template import takes_content_parts

    assert not takes_content_parts("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert not takes_content_parts("{% for m in messages %}{{ m.content + '!' }}{% endfor %}")
    assert takes_content_parts(
        "{% for m in messages %}{% for c in m['content'] %}{{ c.text }}{% endfor %}{% endfor %}"
    )
    assert takes_content_parts(
        "{% for m in messages %}{% for c in m.content | selectattr('type', 'equalto', 'text') %}"
        "{{ c.text }}{% endfor %}{% endfor %}"
    )


def test_text_parts_reach_a_template_that_loops_over_them_unchanged():
    card = template_card(
        "{% for m in messages %}{% if m.content is string %}{{ m.content }}"
        "{% else %}{% for c in m.content %}[{{ c.text }}]{% endfor %}{% endif %}{% endfor %}"
    )
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert formatter(card).render([{"role": "user", "content": parts}]) == "[a][b]"
    card = template_card("{% for m in messages %}<{{ m.content }}>{% endfor %}")
    assert formatter(card).render([{"role": "user", "content": parts}]) == "<a\nb>"
