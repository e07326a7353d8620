"""Embeddings: the OpenAI request (`POST /v1/embeddings`) and the shapes that cross to an engine.

Field-compatible with upstream Dynamo: the frontend tokenizes and sends a
`PreprocessedEmbeddingRequest {model, token_ids: [[...], ...], encoding_format, dimensions,
annotations}`; an engine of model type `Embedding` answers with one
`EmbeddingsEngineOutput {embeddings: [[...], ...], prompt_tokens, total_tokens}`, one vector per
input, in input order, already pooled and normalized as the model's embeddings are meant to be.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dynamo.llm.protocols.openai import STRICT_JSON

#: The most inputs one request may carry (OpenAI's limit).
MAX_INPUTS = 2048


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request. Unknown fields, and values of the wrong JSON type, are
    refused."""

    model_config = STRICT_JSON

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @model_validator(mode="after")
    def _inputs(self) -> EmbeddingRequest:
        inputs = self.inputs()
        if not inputs:
            raise ValueError("input must not be empty")
        if len(inputs) > MAX_INPUTS:
            raise ValueError(f"at most {MAX_INPUTS} inputs per request")
        for i, item in enumerate(inputs):
            if len(item) == 0:
                raise ValueError(f"input[{i}] must not be empty")
        return self

    def inputs(self) -> list[str] | list[list[int]]:
        """The inputs as a list: of strings, or of token-id lists."""
        value = self.input
        if isinstance(value, str):
            return [value]
        if value and all(isinstance(v, int) for v in value):
            return [value]  # type: ignore[list-item]
        return value  # type: ignore[return-value]


class PreprocessedEmbeddingRequest(BaseModel):
    """What an Embedding engine receives (upstream's shape)."""

    model_config = ConfigDict(extra="allow")

    model: str
    token_ids: list[list[int]]
    encoding_format: str | None = None
    dimensions: int | None = None
    mdc_sum: str | None = None
    annotations: list[str] = Field(default_factory=list)


class EmbeddingsEngineOutput(BaseModel):
    """What an Embedding engine answers: one vector per input (upstream's shape)."""

    model_config = ConfigDict(extra="allow")

    embeddings: list[list[float]]
    prompt_tokens: int
    total_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


class EmbeddingData(BaseModel):
    model_config = ConfigDict(defer_build=True)  # see `openai.STRICT_JSON`

    object: Literal["embedding"] = "embedding"
    index: int
    #: Floats, or base64 of little-endian float32 (`encoding_format`).
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    model_config = ConfigDict(defer_build=True)  # see `openai.STRICT_JSON`

    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    """What `POST /v1/embeddings` answers."""

    model_config = ConfigDict(defer_build=True)  # see `openai.STRICT_JSON`

    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage
