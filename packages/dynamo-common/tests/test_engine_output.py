"""completion_usage: the usage block of an engine's last delta."""

from dynamo.llm.engine_output import completion_usage
from dynamo.llm.protocols.wire import LLMEngineOutput


def test_usage_with_and_without_cache_hits() -> None:
    assert completion_usage(4, 2) == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    usage = completion_usage(4, 2, 3)
    assert usage["prompt_tokens_details"] == {"cached_tokens": 3}
    LLMEngineOutput.model_validate({"token_ids": [], "completion_usage": usage})
