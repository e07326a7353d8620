"""Request, response and wire shapes: OpenAI's, and the ones that cross to an engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynamo.runtime.lazy_exports import lazy_exports

if TYPE_CHECKING:
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

# Loaded on first use: the engine-facing shapes (`protocols.wire`) must not bring the OpenAI
# request models (~0.4 s of pydantic schema building) into a worker, which never sees an HTTP
# request (docs/performance.md, start-up).
_WHERE = {
    "ChatCompletionRequest": "dynamo.llm.protocols.openai",
    "ChatMessage": "dynamo.llm.protocols.openai",
    "CompletionRequest": "dynamo.llm.protocols.openai",
    "ModelCard": "dynamo.llm.protocols.openai",
    "ModelList": "dynamo.llm.protocols.openai",
    "NvExt": "dynamo.llm.protocols.openai",
    "StreamOptions": "dynamo.llm.protocols.openai",
    "CompletionUsage": "dynamo.llm.protocols.wire",
    "FinishReason": "dynamo.llm.protocols.wire",
    "GuidedDecodingOptions": "dynamo.llm.protocols.wire",
    "LLMEngineOutput": "dynamo.llm.protocols.wire",
    "OutputOptions": "dynamo.llm.protocols.wire",
    "PreprocessedRequest": "dynamo.llm.protocols.wire",
    "SamplingOptions": "dynamo.llm.protocols.wire",
    "StopConditions": "dynamo.llm.protocols.wire",
    "TopLogprob": "dynamo.llm.protocols.wire",
}
__getattr__ = lazy_exports(__name__, _WHERE)

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
