"""`EmbeddingModel`: a model of type `Embedding` as the inputs see it.

The same shape of pipeline as generation, one step shorter: tokenize (here, with the model card's
tokenizer) → engine (in process, or a worker behind the router) → one vector per input. The
engine is anything with `generate(request, context)`: it gets a `PreprocessedEmbeddingRequest`
dict and yields one `EmbeddingsEngineOutput` dict.
"""

from __future__ import annotations

import asyncio
import base64
from array import array
from collections.abc import AsyncIterator
from typing import Any

from dynamo.llm.errors import EngineFailedError, InvalidRequestError
from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.model_type import ModelType
from dynamo.llm.pipeline import AsyncEngine, ServedModel, StreamDelta
from dynamo.llm.protocols.embeddings import EmbeddingRequest, EmbeddingsEngineOutput
from dynamo.llm.protocols.openai import ChatCompletionRequest, CompletionRequest
from dynamo.runtime.context import Context

#: Inputs at least this long (characters, all together) are tokenized off the event loop.
_OFFLOAD_MIN_CHARS = 8192


def encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    """A vector as OpenAI sends it: floats, or base64 of little-endian float32 (what the
    `openai` SDK asks for by default and decodes)."""
    if encoding_format == "base64":
        packed = array("f", vector)
        if packed.itemsize != 4:  # pragma: no cover - every platform we run on has 4-byte floats
            raise RuntimeError("float32 arrays are needed for base64 embeddings")
        return base64.b64encode(packed.tobytes()).decode()
    return vector


class EmbeddingModel(ServedModel):
    """Serves `POST /v1/embeddings`; refuses chat and completions."""

    def __init__(self, name: str, card: ModelDeploymentCard, engine: AsyncEngine):
        super().__init__(name, card, ModelType.Embedding)
        self.engine = engine

    def chat(self, request: ChatCompletionRequest, context: Context) -> AsyncIterator[StreamDelta]:
        raise InvalidRequestError(
            f"model '{self.name}' serves embeddings only (POST /v1/embeddings)", param="model"
        )

    def completion(
        self, request: CompletionRequest, context: Context
    ) -> AsyncIterator[StreamDelta]:
        raise InvalidRequestError(
            f"model '{self.name}' serves embeddings only (POST /v1/embeddings)", param="model"
        )

    def _token_ids(self, request: EmbeddingRequest) -> list[list[int]]:
        assert self.card is not None
        tokenizer = self.card.tokenizer()
        texts = [item for item in request.inputs() if isinstance(item, str)]
        if texts:
            ids = [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=True)]
        else:
            vocab = tokenizer.get_vocab_size(with_added_tokens=True)
            ids = [list(item) for item in request.inputs() if not isinstance(item, str)]
            if any(not 0 <= t < vocab for item in ids for t in item):
                raise InvalidRequestError(f"input token ids must be in [0, {vocab})", param="input")
        limit = self.card.context_length
        for i, item in enumerate(ids):
            if not item:
                raise InvalidRequestError(f"input[{i}] has no tokens", param="input")
            if limit and len(item) > limit:
                raise InvalidRequestError(
                    f"input[{i}] has {len(item)} tokens; this model embeds at most {limit}",
                    param="input",
                    code="context_length_exceeded",
                )
        return ids

    async def embed(self, request: EmbeddingRequest, context: Context) -> EmbeddingsEngineOutput:
        """One vector per input, as the engine computed them."""
        inputs = request.inputs()
        long = isinstance(inputs[0], str) and sum(map(len, inputs)) >= _OFFLOAD_MIN_CHARS
        token_ids = (
            await asyncio.to_thread(self._token_ids, request) if long else self._token_ids(request)
        )
        preq: dict[str, Any] = {
            "model": request.model,
            "token_ids": token_ids,
            "encoding_format": request.encoding_format,
            "dimensions": request.dimensions,
            "annotations": [],
        }
        result: dict[str, Any] | None = None
        stream = self.engine.generate(preq, context)
        try:
            async for out in stream:
                if "embeddings" in out:
                    result = out
                    break
                reason = out.get("finish_reason")
                if reason is not None:
                    error = reason.get("error") if isinstance(reason, dict) else out.get("error")
                    raise EngineFailedError(str(error or f"the engine finished with {reason!r}"))
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        if result is None:
            raise EngineFailedError("the engine returned no embeddings")
        output = EmbeddingsEngineOutput.model_validate(result)
        if len(output.embeddings) != len(token_ids):
            raise EngineFailedError(
                f"the engine returned {len(output.embeddings)} embeddings for {len(token_ids)} inputs"
            )
        if request.dimensions is not None:
            size = len(output.embeddings[0])
            if request.dimensions != size:
                raise InvalidRequestError(
                    f"model '{self.name}' returns {size}-dimensional embeddings and cannot "
                    "shorten them; leave `dimensions` out",
                    param="dimensions",
                )
        return output

    def response(self, request: EmbeddingRequest, output: EmbeddingsEngineOutput) -> dict[str, Any]:
        """The OpenAI response body."""
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": encode_vector(v, request.encoding_format),
            }
            for i, v in enumerate(output.embeddings)
        ]
        return {
            "object": "list",
            "data": data,
            "model": self.name,
            "usage": {"prompt_tokens": output.prompt_tokens, "total_tokens": output.total_tokens},
        }
