"""Our renderer against transformers' `apply_chat_template`, byte for byte, on real templates."""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerFast

from dynamo.llm.chat_template import PromptFormatter, TemplateError
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


def test_generation_tags_render_their_body():
    card = template_card(
        "{% for m in messages %}{% generation %}[{{ m.content }}]{% endgeneration %}{% endfor %}"
    )
    assert formatter(card).render(CONVERSATIONS["multi_turn"]) == "[What is 2+2?][4][  And 3+3?  ]"


def test_sandbox_refuses_unsafe_attribute_access():
    card = template_card("{{ messages.__class__.__mro__ }}")
    with pytest.raises(TemplateError):
        formatter(card).render(CONVERSATIONS["single"])
