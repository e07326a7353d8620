"""Request, response and wire shapes: OpenAI's, and the ones that cross to an engine."""

from dynamo.llm.protocols.openai import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    ModelCard,
    ModelList,
    NvExt,
    StreamOptions,
)
from dynamo.llm.protocols.wire import (
    CompletionUsage,
    FinishReason,
    GuidedDecodingOptions,
    LLMEngineOutput,
    OutputOptions,
    PreprocessedRequest,
    SamplingOptions,
    StopConditions,
    TopLogprob,
)

__all__ = [
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "CompletionUsage",
    "FinishReason",
    "GuidedDecodingOptions",
    "LLMEngineOutput",
    "ModelCard",
    "ModelList",
    "NvExt",
    "OutputOptions",
    "PreprocessedRequest",
    "SamplingOptions",
    "StopConditions",
    "StreamOptions",
    "TopLogprob",
]
