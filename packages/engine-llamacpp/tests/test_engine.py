"""The engine on the real SmolLM2 GGUF, against llama-cpp-python called directly."""

from __future__ import annotations

import asyncio

import llama_cpp
import pytest

from dynamo.engines.llamacpp import LlamaCppEngine
from dynamo.llm import Context, EngineConfig
from dynamo.llm.model_card import load_card


@pytest.fixture(scope="module")
def card(smollm2_gguf):
    return load_card(str(smollm2_gguf))


@pytest.fixture
async def engine(card, smollm2_gguf):
    engine = await LlamaCppEngine.start(
        EngineConfig("smol", card=card, model_path=str(smollm2_gguf), context_length=1024)
    )
    yield engine
    await engine.close()


def prompt_ids(card, text: str) -> list[int]:
    return (
        card.tokenizer()
        .encode(
            f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False
        )
        .ids
    )


def request(ids: list[int], max_tokens: int = 16, **sampling) -> dict:
    return {
        "token_ids": ids,
        "stop_conditions": {"max_tokens": max_tokens},
        "sampling_options": {"temperature": 0.0, **sampling},
        "eos_token_ids": [2],
    }


async def collect(agen) -> list[dict]:
    return [o async for o in agen]


async def test_greedy_matches_llama_cpp_directly(engine, card, smollm2_gguf):
    ids = prompt_ids(card, "What is the capital of France?")
    out = await collect(engine.generate(request(ids, 24), Context()))
    ours = [t for o in out for t in o["token_ids"]]
    direct = llama_cpp.Llama(model_path=str(smollm2_gguf), n_ctx=1024, verbose=False)
    theirs = []
    for token in direct.generate(ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0):
        if token == 2 or len(theirs) == 24:
            break
        theirs.append(token)
    assert ours == theirs and ours
    assert out[-1]["finish_reason"] in ("eos", "length")


async def test_max_tokens_and_finish(engine, card):
    out = await collect(engine.generate(request(prompt_ids(card, "Count to fifty"), 3), Context()))
    assert sum(len(o["token_ids"]) for o in out) == 3
    assert out[-1] == {"token_ids": [], "finish_reason": "length"}


async def test_seeded_sampling_is_reproducible(engine, card):
    ids = prompt_ids(card, "Tell me a story")
    a = await collect(engine.generate(request(ids, 12, temperature=1.0, seed=42), Context()))
    b = await collect(engine.generate(request(ids, 12, temperature=1.0, seed=42), Context()))
    assert a == b


async def test_cancellation_stops_within_one_token(engine, card):
    ctx = Context()
    out = []
    async for o in engine.generate(request(prompt_ids(card, "Write a long essay"), 500), ctx):
        out.append(o)
        if len(out) == 3:
            ctx.stop_generating()
    assert len(out) <= 5
    assert out[-1]["finish_reason"] == "cancelled"


async def test_concurrent_requests_both_complete(engine, card):
    a, b = await asyncio.gather(
        collect(engine.generate(request(prompt_ids(card, "Hi"), 8), Context())),
        collect(engine.generate(request(prompt_ids(card, "Hello"), 8), Context())),
    )
    assert a[-1]["finish_reason"] and b[-1]["finish_reason"]


async def test_closing_the_stream_early_frees_the_engine(engine, card):
    stream = engine.generate(request(prompt_ids(card, "Write a long essay"), 500), Context())
    await anext(stream)
    await stream.aclose()
    out = await asyncio.wait_for(
        collect(engine.generate(request(prompt_ids(card, "Hi"), 4), Context())), 60
    )
    assert out[-1]["finish_reason"] in ("eos", "length")


async def test_request_cancelled_while_queued_never_runs(engine, card):
    essay = prompt_ids(card, "Write a long essay")
    first = engine.generate(request(essay, 40), Context())
    await anext(first)  # the worker thread is now busy with the first request
    ctx = Context()
    queued = asyncio.ensure_future(
        collect(engine.generate(request(prompt_ids(card, "Hi"), 8), ctx))
    )
    await asyncio.sleep(0)  # let it reach the queue behind the first
    ctx.stop_generating()
    await collect(first)
    assert await queued == [{"token_ids": [], "finish_reason": "cancelled"}]
    # llama.cpp's context still holds the first request: the queued prompt was never evaluated.
    assert engine._llama.input_ids[: len(essay)].tolist() == essay
