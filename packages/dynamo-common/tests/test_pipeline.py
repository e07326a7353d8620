"""The pipeline's `ServedModel`s in process, on scripted engines: what a Backend engine's deltas
become (text, finish reasons, usage, cached tokens, errors in every spelling, a local stop that
tells the engine to stop), what a text-level engine gets and gives, and choices fanned out.

Nothing here mocks the pipeline: a scripted engine replaces only the model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from dynamo.llm.errors import EngineFailedError, InvalidRequestError
from dynamo.llm.features import Feature
from dynamo.llm.model_type import ModelType
from dynamo.llm.pipeline import BackendModel, OpenAIEngineModel, StreamDelta
from dynamo.llm.protocols.openai import ChatCompletionRequest, CompletionRequest
from dynamo.runtime.context import Context

TEXT_MODELS = frozenset({ModelType.Chat, ModelType.Completion})


class TokenScript:
    """A Backend engine that streams scripted engine deltas and records what it was sent and
    whether its stream was closed."""

    def __init__(self, *outs: dict[str, Any]) -> None:
        self.outs = outs
        self.requests: list[dict[str, Any]] = []
        self.closed = False

    async def generate(self, request: dict[str, Any], context: Context) -> AsyncIterator[dict]:
        self.requests.append(request)
        try:
            for out in self.outs:
                yield out
        finally:
            self.closed = True


class ChunkScript(TokenScript):
    """A text-level engine: the same, with OpenAI chunks."""


def chat(content: str = "hi", **kw: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": content}], **kw}
    )


def completion(prompt: str = "hi", **kw: Any) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": prompt, **kw})


async def run(stream: AsyncIterator[StreamDelta]) -> list[StreamDelta]:
    return [delta async for delta in stream]


def ids(card, text: str) -> list[int]:
    return card.tokenizer().encode(text, add_special_tokens=False).ids


async def test_backend_tokens_become_text_and_the_engines_finish_reason(smollm2_card):
    engine = TokenScript(
        {"token_ids": ids(smollm2_card, "Hello")},
        {"token_ids": ids(smollm2_card, " world"), "finish_reason": "length"},
    )
    model = BackendModel("m", smollm2_card, engine)
    deltas = await run(model.chat(chat(), Context()))
    assert "".join(d.text for d in deltas) == "Hello world"
    assert deltas[-1].finish_reason == "length"
    last = deltas[-1]
    assert last.completion_tokens == len(ids(smollm2_card, "Hello world"))
    assert last.prompt_tokens == len(engine.requests[0]["token_ids"]) > 0
    assert engine.closed


async def test_a_local_stop_string_stops_the_engine(smollm2_card):
    engine = TokenScript(*({"token_ids": [t]} for t in ids(smollm2_card, "one two three four")))
    context = Context()
    deltas = await run(
        model_of(smollm2_card, engine).completion(completion(stop=[" three"]), context)
    )
    assert "".join(d.text for d in deltas) == "one two"
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].stop_reason == " three"
    assert context.is_stopped()
    assert engine.closed


def model_of(card, engine) -> BackendModel:
    return BackendModel("m", card, engine)


async def test_cached_tokens_reported_by_the_engine_reach_the_deltas(smollm2_card):
    engine = TokenScript(
        {
            "token_ids": ids(smollm2_card, "ok"),
            "completion_usage": {"prompt_tokens_details": {"cached_tokens": 3}},
        },
        {"token_ids": [], "finish_reason": "stop"},
    )
    deltas = await run(model_of(smollm2_card, engine).chat(chat(), Context()))
    assert deltas[-1].cached_tokens == 3


@pytest.mark.parametrize(
    "out",
    [
        {"finish_reason": {"error": "out of memory"}},
        {"finish_reason": "error", "error": "out of memory"},
        {"event": "error", "comment": "out of memory"},
    ],
)
async def test_an_engine_error_in_any_spelling_is_an_engine_failure(smollm2_card, out):
    engine = TokenScript({"token_ids": ids(smollm2_card, "a")}, out)
    with pytest.raises(EngineFailedError, match="out of memory"):
        await run(model_of(smollm2_card, engine).chat(chat(), Context()))
    assert engine.closed


async def test_a_killed_request_gets_no_closing_delta(smollm2_card):
    context = Context()

    class Killed(TokenScript):
        async def generate(self, request, context):
            yield {"token_ids": ids(smollm2_card, "a")}
            context.kill()

    deltas = await run(model_of(smollm2_card, Killed()).chat(chat(), context))
    assert [d.finish_reason for d in deltas] == [None]


async def test_n_choices_are_fanned_out_with_their_index(smollm2_card):
    engine = TokenScript({"token_ids": ids(smollm2_card, "x"), "finish_reason": "stop"})
    deltas = await run(model_of(smollm2_card, engine).chat(chat(n=3), Context()))
    assert len(engine.requests) == 3
    finished = sorted(d.index for d in deltas if d.finish_reason)
    assert finished == [0, 1, 2]


async def test_a_text_engine_gets_a_json_safe_streaming_body_with_greed_applied():
    engine = ChunkScript(
        {"choices": [{"index": 0, "delta": {"content": "a"}}]},
        {"choices": [{"index": 0, "delta": {"content": "b"}, "finish_reason": "stop"}]},
    )
    model = OpenAIEngineModel("m", None, engine, TEXT_MODELS, frozenset(Feature))
    request = chat(temperature=0.9, logit_bias={"5": 1.0}, nvext={"greed_sampling": True})
    deltas = await run(model.chat(request, Context()))
    assert [(d.text, d.finish_reason) for d in deltas] == [("a", None), ("b", "stop")]
    assert deltas[-1].completion_tokens == 2  # one a chunk, with no usage from the engine
    body = engine.requests[0]
    assert body["stream"] is True and body["temperature"] == 0.0
    assert body["logit_bias"] == {"5": 1.0}


async def test_a_text_engines_usage_wins_over_counting_chunks():
    usage = {"prompt_tokens": 7, "completion_tokens": 5}
    engine = ChunkScript(
        {"choices": [{"index": 0, "text": "done", "finish_reason": "length"}], "usage": usage}
    )
    model = OpenAIEngineModel("m", None, engine, TEXT_MODELS)
    deltas = await run(model.completion(completion("say"), Context()))
    assert engine.requests[0]["prompt"] == "say"
    assert [(d.text, d.finish_reason) for d in deltas] == [("done", "length")]
    assert (deltas[-1].prompt_tokens, deltas[-1].completion_tokens) == (7, 5)


async def test_a_text_engine_that_just_ends_gets_a_stop():
    engine = ChunkScript({"choices": [{"index": 0, "delta": {"content": "a"}}]})
    model = OpenAIEngineModel("m", None, engine, TEXT_MODELS)
    deltas = await run(model.chat(chat(), Context()))
    assert [d.finish_reason for d in deltas] == [None, "stop"]


def test_a_model_refuses_the_kind_it_does_not_serve():
    chat_only = OpenAIEngineModel("c", None, ChunkScript(), frozenset({ModelType.Chat}))
    with pytest.raises(InvalidRequestError, match="'c' does not serve completions"):
        chat_only.completion(completion(), Context())
    completion_only = OpenAIEngineModel("p", None, ChunkScript(), frozenset({ModelType.Completion}))
    with pytest.raises(InvalidRequestError, match="'p' does not serve chat completions"):
        completion_only.chat(chat(), Context())
