"""The wire shapes' contract: guided decoding options and logprobs on engine outputs."""

import pytest
from pydantic import ValidationError

from dynamo.llm.protocols import LLMEngineOutput
from dynamo.llm.protocols.wire import GuidedDecodingOptions


def test_guided_decoding_takes_exactly_one_kind():
    g = GuidedDecodingOptions.model_validate({"json": {"type": "object"}, "backend": "xgrammar"})
    assert g.kinds() == ["json"]
    assert g.model_dump(by_alias=True, exclude_none=True) == {
        "json": {"type": "object"},
        "backend": "xgrammar",
    }
    with pytest.raises(ValidationError):
        GuidedDecodingOptions.model_validate({"regex": "a+", "choice": ["a"]})
    with pytest.raises(ValidationError):
        GuidedDecodingOptions.model_validate({"backend": "xgrammar"})


def test_engine_output_logprobs_must_align_with_token_ids():
    ok = {
        "token_ids": [1, 2],
        "log_probs": [-0.1, -0.2],
        "top_logprobs": [
            [{"rank": 1, "token_id": 1, "logprob": -0.1}],
            [{"rank": 1, "token_id": 2, "logprob": -0.2, "token": "b", "bytes": [98]}],
        ],
    }
    out = LLMEngineOutput.model_validate(ok)
    assert out.top_logprobs[1][0].bytes == [98]
    with pytest.raises(ValidationError):
        LLMEngineOutput.model_validate({**ok, "log_probs": [-0.1]})
