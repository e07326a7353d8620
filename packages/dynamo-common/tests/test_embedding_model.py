"""`EmbeddingModel`: inputs tokenized with the card's tokenizer, checked, sent as one
`PreprocessedEmbeddingRequest`, and the engine's vectors encoded as OpenAI sends them."""

from __future__ import annotations

import base64
from array import array
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from dynamo.llm.embedding_model import EmbeddingModel, encode_vector
from dynamo.llm.errors import EngineFailedError, InvalidRequestError
from dynamo.llm.protocols.embeddings import EmbeddingList, EmbeddingRequest
from dynamo.runtime.context import Context


class VectorEngine:
    """An embedding engine whose vector for an input is [tokens, sum of ids, 0.5]."""

    def __init__(self, answer: dict[str, Any] | None = None):
        self.requests: list[dict[str, Any]] = []
        self.answer = answer

    async def generate(
        self, request: dict[str, Any], context: Context
    ) -> AsyncIterator[dict[str, Any]]:
        self.requests.append(request)
        if self.answer is not None:
            yield self.answer
            return
        ids = request["token_ids"]
        total = sum(map(len, ids))
        yield {
            "embeddings": [[float(len(i)), float(sum(i)), 0.5] for i in ids],
            "prompt_tokens": total,
            "total_tokens": total,
        }


def request(**kw) -> EmbeddingRequest:
    return EmbeddingRequest.model_validate({"model": "e", **kw})


async def test_text_inputs_are_tokenized_with_special_tokens(smollm2_card):
    engine = VectorEngine()
    model = EmbeddingModel("e", smollm2_card, engine)
    out = await model.embed(request(input=["hello world", "hi"]), Context())
    expected = [
        smollm2_card.tokenizer().encode(t, add_special_tokens=True).ids
        for t in ("hello world", "hi")
    ]
    assert engine.requests[0]["token_ids"] == expected
    assert out.embeddings[0] == [float(len(expected[0])), float(sum(expected[0])), 0.5]
    body = model.response(request(input=["hello world", "hi"]), out)
    EmbeddingList.model_validate(body)  # what /openapi.json publishes
    assert [d["index"] for d in body["data"]] == [0, 1] and body["model"] == "e"
    assert body["usage"] == {"prompt_tokens": out.prompt_tokens, "total_tokens": out.total_tokens}


async def test_token_id_inputs_and_base64(smollm2_card):
    engine = VectorEngine()
    model = EmbeddingModel("e", smollm2_card, engine)
    req = request(input=[1, 2, 3], encoding_format="base64")
    out = await model.embed(req, Context())
    assert engine.requests[0]["token_ids"] == [[1, 2, 3]]
    body = model.response(req, out)
    EmbeddingList.model_validate(body)
    encoded = body["data"][0]["embedding"]
    assert list(array("f", base64.b64decode(encoded))) == [3.0, 6.0, 0.5]
    await model.embed(request(input=[[4], [5, 6]]), Context())
    assert engine.requests[1]["token_ids"] == [[4], [5, 6]]


def test_encode_vector_float32():
    assert encode_vector([0.25], "float") == [0.25]
    assert base64.b64decode(encode_vector([0.25], "base64")) == array("f", [0.25]).tobytes()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [10**9]}, "input"),
        ({"input": "word " * 9000}, "input"),
        ({"input": "x", "dimensions": 2}, "dimensions"),
    ],
)
async def test_refused_inputs(smollm2_card, body, param):
    model = EmbeddingModel("e", smollm2_card, VectorEngine())
    with pytest.raises(InvalidRequestError) as e:
        await model.embed(request(**body), Context())
    assert e.value.param == param


@pytest.mark.parametrize(
    "body",
    [
        {"input": []},
        {"input": ""},
        {"input": [[]]},
        {"input": "x", "encoding_format": "int8"},
        {"input": "x", "extra": 1},
    ],
)
def test_request_validation(body):
    with pytest.raises(ValidationError):
        request(**body)


async def test_engine_answers_are_checked(smollm2_card):
    wrong_count = EmbeddingModel(
        "e", smollm2_card, VectorEngine({"embeddings": [], "prompt_tokens": 1, "total_tokens": 1})
    )
    with pytest.raises(EngineFailedError, match="0 embeddings for 1 inputs"):
        await wrong_count.embed(request(input="x"), Context())
    failed = EmbeddingModel(
        "e", smollm2_card, VectorEngine({"finish_reason": {"error": "out of memory"}})
    )
    with pytest.raises(EngineFailedError, match="out of memory"):
        await failed.embed(request(input="x"), Context())


def test_chat_is_refused(smollm2_card):
    model = EmbeddingModel("e", smollm2_card, VectorEngine())
    with pytest.raises(InvalidRequestError, match="embeddings only"):
        model.chat(None, Context())  # type: ignore[arg-type]
