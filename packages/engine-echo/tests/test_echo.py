from __future__ import annotations

import pytest

from dynamo.engines.echo import EchoCoreEngine, EchoFullEngine, token_delay_seconds
from dynamo.llm import Context, EngineConfig, ModelType
from dynamo.llm.engine import load_engine_class
from dynamo.llm.errors import InvalidRequestError


@pytest.fixture(autouse=True)
def no_delay(monkeypatch):
    monkeypatch.setenv("DYN_TOKEN_ECHO_DELAY_MS", "0")
    token_delay_seconds.cache_clear()
    yield
    token_delay_seconds.cache_clear()


async def collect(agen):
    return [item async for item in agen]


def test_entry_points_find_both_engines():
    assert load_engine_class("echo_core") is EchoCoreEngine
    assert load_engine_class("echo_full") is EchoFullEngine
    assert EchoCoreEngine.model_type is ModelType.Backend and EchoCoreEngine.requires_model
    assert EchoFullEngine.model_type is ModelType.Chat and not EchoFullEngine.requires_model


def test_delay_default_and_override(monkeypatch):
    monkeypatch.delenv("DYN_TOKEN_ECHO_DELAY_MS")
    token_delay_seconds.cache_clear()
    assert token_delay_seconds() == 0.010
    monkeypatch.setenv("DYN_TOKEN_ECHO_DELAY_MS", "1")
    token_delay_seconds.cache_clear()
    assert token_delay_seconds() == 0.001


async def test_echo_core_streams_prompt_tokens_then_stop():
    engine = await EchoCoreEngine.start(EngineConfig(model_name="m"))
    out = await collect(engine.generate({"token_ids": [5, 6, 7]}, Context()))
    assert [o["token_ids"] for o in out] == [[5], [6], [7], []]
    assert out[-1]["finish_reason"] == "stop"


async def test_echo_core_honours_max_tokens():
    engine = await EchoCoreEngine.start(EngineConfig(model_name="m"))
    out = await collect(
        engine.generate(
            {"token_ids": [1, 2, 3, 4], "stop_conditions": {"max_tokens": 2}}, Context()
        )
    )
    assert [o["token_ids"] for o in out] == [[1], [2], []]
    assert out[-1]["finish_reason"] == "length"


async def test_echo_core_stops_when_cancelled():
    engine = await EchoCoreEngine.start(EngineConfig(model_name="m"))
    ctx = Context()
    seen = []
    async for o in engine.generate({"token_ids": list(range(100))}, ctx):
        seen.append(o)
        if len(seen) == 3:
            ctx.stop_generating()
    assert len(seen) == 4 and seen[-1]["finish_reason"] == "cancelled"


async def test_echo_full_chat_streams_characters():
    engine = await EchoFullEngine.start(EngineConfig(model_name="m"))
    body = {
        "model": "m",
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hé!"}],
    }
    out = await collect(engine.generate(body, Context("r1")))
    assert "".join(o["choices"][0]["delta"].get("content", "") for o in out) == "hé!"
    assert out[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(o["id"] == "chatcmpl-r1" and o["object"] == "chat.completion.chunk" for o in out)


async def test_echo_full_completions():
    engine = await EchoFullEngine.start(EngineConfig(model_name="m"))
    out = await collect(
        engine.generate({"model": "m", "prompt": "abc", "max_tokens": 2}, Context())
    )
    assert [o["choices"][0]["text"] for o in out] == ["a", "b", ""]
    assert out[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "assistant", "content": "x"}],
        [{"role": "user", "content": [{"type": "image_url"}]}],
    ],
)
async def test_echo_full_needs_a_text_user_message(messages):
    engine = await EchoFullEngine.start(EngineConfig(model_name="m"))
    with pytest.raises(InvalidRequestError):
        await collect(engine.generate({"model": "m", "messages": messages}, Context()))


async def test_echo_full_ends_at_a_stop_string():
    """Issue 18 item 13: echo_full ignored `stop`."""
    engine = await EchoFullEngine.start(EngineConfig(model_name="m"))

    async def echo(**kw) -> tuple[str, str]:
        body = {"model": "m", "messages": [{"role": "user", "content": "one two three"}], **kw}
        out = await collect(engine.generate(body, Context()))
        text = "".join(o["choices"][0]["delta"].get("content", "") for o in out)
        return text, out[-1]["choices"][0]["finish_reason"]

    assert await echo(stop=[" thr"]) == ("one two", "stop")
    assert await echo(stop=" two", include_stop_str_in_output=True) == ("one two", "stop")
    assert await echo(stop=" two", nvext={"include_stop_str_in_output": True}) == (
        "one two",
        "stop",
    )
    # A partial match held back at the end is released, not lost.
    assert await echo(stop=["threes"]) == ("one two three", "stop")
    assert await echo(stop=["threes"], max_tokens=12) == ("one two thre", "length")


async def test_echo_full_reports_its_usage_in_characters():
    """Issue 18 item 13: echo_full reported prompt_tokens 0."""
    engine = await EchoFullEngine.start(EngineConfig(model_name="m"))
    out = await collect(
        engine.generate({"model": "m", "prompt": "abcd", "max_tokens": 3}, Context())
    )
    assert out[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


async def test_echo_full_takes_text_parts():
    engine = await EchoFullEngine.start(EngineConfig(model_name="m"))
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    body = {"model": "m", "messages": [{"role": "user", "content": parts}]}
    out = await collect(engine.generate(body, Context()))
    assert "".join(o["choices"][0]["delta"].get("content", "") for o in out) == "a\nb"
