"""Request, response and wire shapes: OpenAI's, and the ones that cross to an engine."""

from dynamo.llm.protocols.openai import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    ModelCard,
    ModelList,
    NvExt,
    StreamOptions,
    Usage,
)
from dynamo.llm.protocols.wire import (
    FinishReason,
    LLMEngineOutput,
    OutputOptions,
    PreprocessedRequest,
    SamplingOptions,
    StopConditions,
)

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "FinishReason",
    "LLMEngineOutput",
    "ModelCard",
    "ModelList",
    "NvExt",
    "OutputOptions",
    "PreprocessedRequest",
    "SamplingOptions",
    "StopConditions",
    "StreamOptions",
    "Usage",
]
