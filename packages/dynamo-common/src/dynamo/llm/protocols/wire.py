"""The shapes that cross between the frontend and an engine, field-compatible with upstream Dynamo.

A Backend engine receives a `PreprocessedRequest` (as a plain dict on the hot path, so an existing
upstream Python worker's handler works unchanged) and yields `LLMEngineOutput` deltas. The models
here validate and document those dicts; the hot path builds dicts directly and never pays for
pydantic per token.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class FinishReason(StrEnum):
    """Why a generation ended. `cancelled` has the alias `abort` upstream."""

    EOS = "eos"
    LENGTH = "length"
    STOP = "stop"
    ERROR = "error"
    CANCELLED = "cancelled"
    CONTENT_FILTER = "content_filter"

    @classmethod
    def parse(cls, value: Any) -> FinishReason | None:
        """Accept every spelling upstream workers send: `"abort"`, `{"error": msg}`, or None."""
        if value is None:
            return None
        if isinstance(value, dict):
            return cls.ERROR
        if value == "abort":
            return cls.CANCELLED
        return cls(value)

    def to_openai(self) -> str:
        """The OpenAI `finish_reason` for this reason: eos and stop are both `stop`."""
        return {
            FinishReason.EOS: "stop",
            FinishReason.STOP: "stop",
            FinishReason.LENGTH: "length",
            FinishReason.CONTENT_FILTER: "content_filter",
        }.get(self, "stop" if self is FinishReason.CANCELLED else "error")


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class StopConditions(_Wire):
    max_tokens: int | None = None
    stop: list[str] | None = None
    stop_token_ids: list[int] | None = None
    stop_token_ids_hidden: list[int] | None = None
    min_tokens: int | None = None
    ignore_eos: bool | None = None
    max_thinking_tokens: int | None = None


class SamplingOptions(_Wire):
    n: int | None = None
    best_of: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    use_beam_search: bool | None = None
    length_penalty: float | None = None
    seed: int | None = None
    include_stop_str_in_output: bool | None = None
    guided_decoding: dict[str, Any] | None = None


class OutputOptions(_Wire):
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    skip_special_tokens: bool | None = None
    formatted_prompt: bool | None = None


class PreprocessedRequest(_Wire):
    """What a Backend engine receives: token ids plus everything needed to generate from them."""

    model: str
    token_ids: list[int]
    batch_token_ids: list[list[int]] | None = None
    stop_conditions: StopConditions = Field(default_factory=StopConditions)
    sampling_options: SamplingOptions = Field(default_factory=SamplingOptions)
    output_options: OutputOptions = Field(default_factory=OutputOptions)
    eos_token_ids: list[int] = Field(default_factory=list)
    mdc_sum: str | None = None
    annotations: list[str] = Field(default_factory=list)
    estimated_prefix_hit_num_blocks: int | None = None
    backend_instance_id: int | None = None
    router_config_override: dict[str, Any] | None = None
    extra_args: dict[str, Any] | None = None


class LLMEngineOutput(_Wire):
    """One delta from a Backend engine: new token ids, and a finish reason on the last one."""

    token_ids: list[int] = Field(default_factory=list)
    tokens: list[str | None] | None = None
    text: str | None = None
    cum_log_probs: float | None = None
    log_probs: list[float] | None = None
    top_logprobs: list[Any] | None = None
    finish_reason: Any = None
    stop_reason: Any = None
    index: int | None = None
    disaggregated_params: Any = None
    completion_usage: dict[str, Any] | None = None
