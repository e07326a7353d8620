"""Helpers for tests through the real `openai` SDK: a short chat, a function tool, a request whose
echo_core answer is a chosen text, and the check that a request is refused naming its field."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest

#: A one-message chat.
HI = [{"role": "user", "content": "Hello there, how are you today?"}]

#: A function tool in the Chat Completions shape.
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def raw_echo(text: str, **kw: Any) -> dict[str, Any]:
    """A chat request whose echo_core answer is exactly `text` (`nvext.use_raw_prompt`: the
    prompt is the text, not the chat template's rendering; `ignore_eos`: no early end)."""
    extra = {"nvext": {"use_raw_prompt": True, "ignore_eos": True}, **kw.pop("extra_body", {})}
    return {"messages": [{"role": "user", "content": text}], "extra_body": extra, **kw}


async def refused(call: Awaitable[Any], param: str) -> str:
    """Awaits an SDK call that must be a 400 whose `param` names the field; returns the
    message."""
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        await call
    assert e.value.status_code == 400
    body = e.value.body
    assert isinstance(body, dict), body
    assert body["param"] == param, body
    return body["message"]
