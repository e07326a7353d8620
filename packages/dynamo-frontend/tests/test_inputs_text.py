"""`in=text` and `in=stdin` in process: each turn streams its answer to stdout and carries the
conversation so far; blank lines are skipped; Ctrl-D ends the chat; a refused request is one
`[error: ...]` line and the chat goes on; empty stdin is an `InputError`."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from dynamo.frontend.inputs import InputError, text
from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.features import Feature
from dynamo.llm.model_type import ModelType
from dynamo.llm.pipeline import OpenAIEngineModel
from dynamo.runtime.context import Context

ALL = frozenset(Feature)


class Counting:
    """A chat engine that answers how many messages it got and what the last one said, in two
    chunks, and keeps every request's messages and options."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def generate(self, request: dict[str, Any], context: Context) -> AsyncIterator[dict]:
        self.requests.append(request)
        messages = request["messages"]
        if messages[-1]["content"] == "refuse me":
            raise InvalidRequestError("no, thank you")
        for piece, finish in ((f"{len(messages)}:", None), (messages[-1]["content"], "stop")):
            choice = {"index": 0, "delta": {"content": piece}, "finish_reason": finish}
            yield {"choices": [choice]}


@pytest.fixture
def engine() -> Counting:
    return Counting()


@pytest.fixture
def model(engine) -> OpenAIEngineModel:
    return OpenAIEngineModel("counting", None, engine, frozenset({ModelType.Chat}), ALL)


def typed(monkeypatch, *lines: str) -> None:
    """The user types `lines`, then Ctrl-D."""
    queue: Iterator[str] = iter(lines)

    def read(prompt: str) -> str:
        assert prompt == "User: "
        line = next(queue, None)
        if line is None:
            raise EOFError
        return line

    monkeypatch.setattr(text, "_read_line_blocking", read)


async def test_each_turn_carries_the_conversation_so_far(monkeypatch, capsys, model, engine):
    typed(monkeypatch, "hello", "   ", "again")
    await text.run_text(model, ignore_eos=False)
    out, err = capsys.readouterr()
    assert out == "1:hello\n3:again\n"
    assert "Chatting with counting" in err
    assert [m["content"] for m in engine.requests[1]["messages"]] == ["hello", "1:hello", "again"]
    assert [m["role"] for m in engine.requests[1]["messages"]] == ["user", "assistant", "user"]
    assert len(engine.requests) == 2  # the blank line was not sent


async def test_a_refused_turn_is_one_line_and_the_chat_goes_on(monkeypatch, capsys, model):
    typed(monkeypatch, "refuse me", "fine")
    await text.run_text(model, ignore_eos=False)
    out, _ = capsys.readouterr()
    assert out == "\n[error: no, thank you]\n3:fine\n"


async def test_a_turn_the_model_refuses_up_front_is_one_line_too(monkeypatch, capsys, engine):
    """An engine without `ignore_eos`: the model's own check refuses the request before any
    stream exists."""
    model = OpenAIEngineModel("plain", None, engine, frozenset({ModelType.Chat}), frozenset())
    typed(monkeypatch, "one", "two")
    await text.run_text(model, ignore_eos=True)
    out, _ = capsys.readouterr()
    assert out.count("[error: 'nvext.ignore_eos' is not supported by model 'plain'") == 2
    assert engine.requests == []


async def test_ignore_eos_reaches_the_request(monkeypatch, capsys, model, engine):
    typed(monkeypatch, "x")
    await text.run_text(model, ignore_eos=True)
    assert engine.requests[0]["nvext"]["ignore_eos"] is True


async def test_stdin_is_one_prompt_and_one_answer(monkeypatch, capsys, model, engine):
    monkeypatch.setattr("sys.stdin", io.StringIO("line one\nline two\n"))
    await text.run_stdin(model, ignore_eos=False)
    out, _ = capsys.readouterr()
    assert out == "1:line one\nline two\n\n"
    assert len(engine.requests) == 1


async def test_empty_stdin_is_an_input_error(monkeypatch, model, engine):
    monkeypatch.setattr("sys.stdin", io.StringIO("  \n"))
    with pytest.raises(InputError, match="stdin was empty"):
        await text.run_stdin(model, ignore_eos=False)
    assert engine.requests == []


async def test_read_line_passes_ctrl_d_on(monkeypatch):
    typed(monkeypatch)
    with pytest.raises(EOFError):
        await text.read_line("User: ")
    typed(monkeypatch, "typed")
    assert await text.read_line("User: ") == "typed"
