"""The shapes that cross between the frontend and an engine, field-compatible with upstream Dynamo.

A Backend engine receives a `PreprocessedRequest` (as a plain dict on the hot path, so an existing
upstream Python worker's handler works unchanged) and yields `LLMEngineOutput` deltas. The models
here validate and document those dicts; the hot path builds dicts directly and never pays for
pydantic per token.

The contract for the OpenAI features an engine may implement (names are upstream's):

- `output_options.logprobs: int`: return the sampled token's log probability, and this many top
  alternatives, for every generated token (0: the sampled token's only). Each delta then carries
  `log_probs` (one float per `token_ids` entry) and `top_logprobs` (one list of `TopLogprob` per
  `token_ids` entry, best first, `rank` from 1). `token` and `bytes` may be left out: the frontend
  fills them from the tokenizer. `output_options.prompt_logprobs: int` asks the same for the
  prompt; the engine sends them once, on its first delta, as `prompt_logprobs` (a list with one
  entry per prompt token, None for the first, each a list of `TopLogprob` holding the prompt
  token itself and the position's best alternatives).
- `completion_usage.prompt_tokens_details.cached_tokens`: prompt tokens served from the prefix
  cache. Send it with the first token: the frontend stops reading at a stop condition it
  detects itself (`max_tokens`, a stop string), before an engine's last delta.
- `sampling_options.guided_decoding`: exactly one of `json` (a JSON schema object; `{"type":
  "object"}` for OpenAI's `json_object`), `regex`, `choice` (a list of strings) or `grammar` (a
  GBNF / EBNF string), plus optional `backend` and `whitespace_pattern`. The engine must
  constrain its sampling so the text matches; it must never just ignore it.
- `sampling_options.logit_bias: {"token_id": bias}` (vLLM's name; not in upstream's struct,
  which keeps unknown fields; keys are strings, as JSON has them), added to the logits before
  sampling, -100 bans a token.
- `n` and `best_of`: the frontend fans a request out into independent engine requests (each with
  `n` unset, and `seed + i` when a seed was given) and indexes the choices itself, so engines
  always produce one sequence per request.
- What an engine honours it declares as `Engine.features` (`dynamo.llm.features`); the frontend
  refuses, with a 400 naming the field, a request that needs a feature its model's engine does not
  declare. The declaration travels on the model card, so a frontend knows it for remote workers.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


class GuidedDecodingOptions(_Wire):
    """Structured output: exactly one of `json`, `regex`, `choice`, `grammar` (upstream's
    `GuidedDecodingOptions`)."""

    json_: Any = Field(default=None, alias="json")
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    backend: str | None = None
    whitespace_pattern: str | None = None
    structural_tag: Any = None

    @model_validator(mode="after")
    def _exactly_one(self) -> GuidedDecodingOptions:
        kinds = self.kinds()
        if len(kinds) != 1:
            raise ValueError(
                "guided decoding takes exactly one of json, regex, choice, grammar; "
                f"got {', '.join(kinds) or 'none'}"
            )
        return self

    def kinds(self) -> list[str]:
        """The constraint kinds that are set (`json`, `regex`, `choice`, `grammar`)."""
        values = {
            "json": self.json_,
            "regex": self.regex,
            "choice": self.choice or None,
            "grammar": self.grammar,
            "structural_tag": self.structural_tag,
        }
        return [k for k, v in values.items() if v is not None]


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
    guided_decoding: GuidedDecodingOptions | None = None
    logit_bias: dict[int, float] | None = None
    allowed_token_ids: list[int] | None = None
    bad_words_token_ids: list[list[int]] | None = None


class OutputOptions(_Wire):
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    skip_special_tokens: bool | None = None
    formatted_prompt: bool | None = None
    return_tokens_as_token_ids: bool | None = None


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


class TopLogprob(_Wire):
    """One candidate token at one position (upstream's `TopLogprob`)."""

    rank: int
    token_id: int
    token: str | None = None
    logprob: float
    bytes: list[int] | None = None


class PromptTokensDetails(_Wire):
    cached_tokens: int | None = None


class CompletionUsage(_Wire):
    """Token counts an engine may report on its last delta; `prompt_tokens_details.cached_tokens`
    (prompt tokens served from the prefix cache) reaches the client's `usage`."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None


class LLMEngineOutput(_Wire):
    """One delta from a Backend engine: new token ids, and a finish reason on the last one.

    With `output_options.logprobs` set, `log_probs[i]` is the log probability of `token_ids[i]`
    and `top_logprobs[i]` its position's best alternatives (see the module docstring).
    """

    token_ids: list[int] = Field(default_factory=list)
    tokens: list[str | None] | None = None
    text: str | None = None
    cum_log_probs: float | None = None
    log_probs: list[float] | None = None
    top_logprobs: list[list[TopLogprob]] | None = None
    prompt_logprobs: list[list[TopLogprob] | None] | None = None
    finish_reason: Any = None
    stop_reason: Any = None
    index: int | None = None
    disaggregated_params: Any = None
    completion_usage: CompletionUsage | None = None

    @model_validator(mode="after")
    def _aligned(self) -> LLMEngineOutput:
        n = len(self.token_ids)
        if self.log_probs is not None and len(self.log_probs) != n:
            raise ValueError(f"log_probs has {len(self.log_probs)} entries for {n} token ids")
        if self.top_logprobs is not None and len(self.top_logprobs) != n:
            raise ValueError(f"top_logprobs has {len(self.top_logprobs)} entries for {n} tokens")
        return self
