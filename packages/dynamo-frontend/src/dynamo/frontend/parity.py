"""The request-field by engine matrix in the README, generated from what each engine declares.

    python -m dynamo.frontend.parity     # prints the Markdown table

A cell says what happens to a request that sets the field on a model served by that engine:
`yes` (the engine does it), `frontend` (the frontend does it while detokenizing, for every
token-level engine), `no effect` (the engine does not sample, so a sampling knob cannot change
its answer), or `400` (refused, naming the field). A test keeps the README's copy equal to this
output, and the conformance tests check the refusals and the features on the engines they run.
"""

from __future__ import annotations

from dynamo.llm.engine import Engine, load_engine_class
from dynamo.llm.features import SAMPLING_KNOBS, Feature
from dynamo.llm.model_type import ModelType

#: The engines in the table: those whose class loads without their GPU library.
ENGINES = ("echo_core", "echo_full", "mocker", "llamacpp", "mistralrs", "vllm")

#: The request fields behind each feature, as a client writes them.
FIELDS: dict[Feature, str] = {
    Feature.TEMPERATURE: "`temperature`",
    Feature.TOP_P: "`top_p`",
    Feature.TOP_K: "`top_k`",
    Feature.MIN_P: "`min_p`",
    Feature.REPETITION_PENALTY: "`repetition_penalty`",
    Feature.PRESENCE_PENALTY: "`presence_penalty`",
    Feature.FREQUENCY_PENALTY: "`frequency_penalty`",
    Feature.SEED: "`seed`",
    Feature.LOGIT_BIAS: "`logit_bias`",
    Feature.LOGPROBS: "`logprobs`, `top_logprobs`; completions `best_of` > `n`",
    Feature.PROMPT_LOGPROBS: "completions `echo` with `logprobs`",
    Feature.GUIDED_JSON: "`response_format` (`json_object`, `json_schema`), `guided_json`, "
    "`tool_choice` `required` or a named function",
    Feature.GUIDED_REGEX: "`guided_regex`",
    Feature.GUIDED_CHOICE: "`guided_choice`",
    Feature.GUIDED_GRAMMAR: "`guided_grammar`",
    Feature.MAX_THINKING_TOKENS: "`nvext.max_thinking_tokens`",
    Feature.STOP: "`stop`",
    Feature.STOP_TOKEN_IDS: "`stop_token_ids`",
    Feature.MIN_TOKENS: "`min_tokens`",
    Feature.IGNORE_EOS: "`ignore_eos`",
    Feature.INCLUDE_STOP_STR: "`include_stop_str_in_output`",
    Feature.SKIP_SPECIAL_TOKENS: "`skip_special_tokens`",
    Feature.RAW_PROMPT: "`nvext.use_raw_prompt`",
    Feature.ANNOTATIONS: "`nvext.annotations` (`formatted_prompt`, `token_ids`; streamed)",
    Feature.TOKEN_PROMPT: "token-id prompts (`prompt` as ids, `nvext.token_data`)",
    Feature.TOOLS: "`tools` (with `tool_choice` `auto`)",
    Feature.TEMPLATE_ARGS: "`chat_template_kwargs`, `reasoning_effort`",
}

#: Features the frontend provides itself for token-level engines.
_DETOKENIZING = frozenset(
    {
        Feature.STOP,
        Feature.STOP_TOKEN_IDS,
        Feature.MIN_TOKENS,
        Feature.IGNORE_EOS,
        Feature.INCLUDE_STOP_STR,
        Feature.SKIP_SPECIAL_TOKENS,
        Feature.RAW_PROMPT,
        Feature.ANNOTATIONS,
        Feature.TOKEN_PROMPT,
        Feature.TOOLS,
        Feature.TEMPLATE_ARGS,
    }
)


def cell(engine: type[Engine], feature: Feature) -> str:
    features = frozenset(getattr(engine, "features", ()))
    if feature in features:
        return "yes"
    if engine.model_type is ModelType.Backend and feature in _DETOKENIZING:
        return "frontend"
    if Feature.UNSAMPLED in features and feature in SAMPLING_KNOBS:
        return "no effect"
    return "400"


def matrix(engines: tuple[str, ...] = ENGINES) -> str:
    classes = {name: load_engine_class(name, require_library=False) for name in engines}
    lines = [
        "| request field | " + " | ".join(f"`{n}`" for n in engines) + " |",
        "|---|" + "---|" * len(engines),
    ]
    for feature, fields in FIELDS.items():
        cells = " | ".join(cell(classes[n], feature) for n in engines)
        lines.append(f"| {fields} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(matrix())
