"""The mocker's made-up log probabilities: well-formed, and consistent with the emitted token."""

import math
import random

import pytest

from dynamo.engines.mocker import MockerEngine
from dynamo.engines.mocker._logprobs import made_up_logprobs
from dynamo.llm import Context, EngineConfig
from dynamo.llm.protocols import LLMEngineOutput

FAST = {"speedup_ratio": 0, "block_size": 4, "num_gpu_blocks": 64, "seed": 1}


@pytest.mark.parametrize("top", [0, 1, 3, 20])
def test_candidates_are_ranked_distinct_and_below_one(top):
    rng = random.Random(3)
    vocab = list(range(10, 20))
    chosen, candidates = made_up_logprobs(12, vocab, top, rng)
    assert chosen < 0
    assert len(candidates) == min(top, len(vocab))
    if top:
        assert candidates[0] == {"rank": 1, "token_id": 12, "logprob": chosen}
    assert [c["rank"] for c in candidates] == list(range(1, len(candidates) + 1))
    assert len({c["token_id"] for c in candidates}) == len(candidates)
    logprobs = [c["logprob"] for c in candidates]
    assert logprobs == sorted(logprobs, reverse=True)
    assert sum(math.exp(lp) for lp in logprobs) <= 1.0


async def test_engine_deltas_carry_aligned_logprobs():
    engine = await MockerEngine.start(EngineConfig(model_name="m", extra_engine_args=FAST))
    try:
        request = {
            "token_ids": [5, 6, 7, 8, 9],
            "stop_conditions": {"max_tokens": 6},
            "output_options": {"logprobs": 2},
        }
        deltas = [d async for d in engine.generate(request, Context())]
    finally:
        await engine.close()
    tokens = [d for d in deltas if d["token_ids"]]
    assert len(tokens) == 6
    for delta in tokens:
        out = LLMEngineOutput.model_validate(delta)  # aligned lengths are validated
        assert out.top_logprobs is not None and out.log_probs is not None
        assert out.top_logprobs[0][0].token_id == out.token_ids[0]
        assert len(out.top_logprobs[0]) == 2


async def test_no_logprobs_unless_asked():
    engine = await MockerEngine.start(EngineConfig(model_name="m", extra_engine_args=FAST))
    try:
        request = {"token_ids": [5, 6, 7], "stop_conditions": {"max_tokens": 2}}
        deltas = [d async for d in engine.generate(request, Context())]
    finally:
        await engine.close()
    assert all("log_probs" not in d for d in deltas)
