"""What kind of requests an engine takes (upstream `ModelType`)."""

from __future__ import annotations

from enum import Enum


class ModelType(Enum):
    """`Backend`: token ids in, token ids out; Dynamo templates, tokenizes and detokenizes.
    `Chat` / `Completion`: OpenAI requests in, OpenAI stream chunks out; the engine does it all.
    """

    Backend = "backend"
    Chat = "chat"
    Completion = "completion"
    Embedding = "embedding"

    @classmethod
    def parse(cls, value: str | ModelType) -> ModelType:
        if isinstance(value, ModelType):
            return value
        for member in cls:
            if member.value == str(value).lower() or member.name == value:
                return member
        raise ValueError(f"unknown model type {value!r}")
