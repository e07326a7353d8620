"""What the SGLang and TensorRT-LLM engines' unit tests share (they run without either library).

Both engines turn a `PreprocessedRequest` into their library's sampling arguments and
`dynamo-run`'s flags into their library's engine arguments, and both must refuse the same
mistakes in one line: the shared cases live here once, parametrised by what differs (the
engine's supported fields, its name for the context length, how it words an unknown argument),
and each package's tests add the cases only its engine has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.generation_options import GenerationOptions


def generation_options(
    supported: frozenset[str], token_ids: Sequence[int], **parts: Any
) -> GenerationOptions:
    """A `PreprocessedRequest` for model `m` with `token_ids` and `parts` (sampling_options,
    stop_conditions, ...), parsed as an engine that honours `supported` parses it."""
    return GenerationOptions.from_request(
        {"model": "m", "token_ids": list(token_ids), **parts}, supported
    )


#: Requests neither engine serves, each with the field its refusal must name (SGLang and
#: TensorRT-LLM return no prompt logprobs and run no beam search).
REFUSED_BY_BOTH: list[tuple[dict[str, Any], str]] = [
    ({"output_options": {"prompt_logprobs": 1}}, "prompt_logprobs"),
    ({"sampling_options": {"use_beam_search": True}}, "use_beam_search"),
]


def assert_refused(supported: frozenset[str], parts: dict[str, Any], param: str) -> None:
    """A request with `parts` is refused while it is parsed, naming `param` (the 400 the client
    gets names the field it must drop)."""
    with pytest.raises(InvalidRequestError) as e:
        generation_options(supported, [5, 6], **parts)
    assert e.value.param == param


def flag_mistakes(*, unknown: str, context_field: str) -> list[Any]:
    """`dynamo-run` flag mistakes both engines refuse when planning their engine arguments, as
    `pytest.param(config_fields, message)` cases: an `--extra-engine-args` key the library does
    not have (the message names it after `unknown`, the engine's wording), one that repeats
    `--context-length` (the library's name for it is `context_field`) with another value, and no
    nodes at all."""
    return [
        pytest.param(
            {"extra_engine_args": {"nonsense_knob": 1}},
            f"{unknown} nonsense_knob",
            id="unknown-extra-arg",
        ),
        pytest.param(
            {"context_length": 200, "extra_engine_args": {context_field: 100}},
            f"{context_field}=100 disagrees",
            id="extra-arg-disagrees",
        ),
        pytest.param({"num_nodes": 0}, "at least 1", id="no-nodes"),
    ]
