"""MockerEngine through the engine contract: streaming, cancellation, KV events, metrics."""

import asyncio

import pytest

from dynamo.engines.mocker import MockerEngine
from dynamo.engines.mocker._engine import MAX_CATCH_UP_S, step_start
from dynamo.llm import Context, EngineConfig
from dynamo.llm.engine import load_engine_class
from dynamo.llm.errors import ContextLengthExceededError, InvalidRequestError
from dynamo.llm.kv.engine_publishers import EnginePublishers
from dynamo.llm.kv.router import KvRouter
from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.testing import until

WORKER = 7
FAST = {"speedup_ratio": 0, "block_size": 4, "num_gpu_blocks": 64, "seed": 1}


async def start(recorder=None, **extra: object) -> MockerEngine:
    config = EngineConfig(model_name="m", extra_engine_args={**FAST, **extra})
    engine = await MockerEngine.start(config)
    if recorder is not None:  # as a worker attaches its publishers
        await engine.attach(EnginePublishers(kv_events=(recorder,)))
    return engine


def request(tokens: list[int], max_tokens: int | None, eos: list[int] | None = None) -> dict:
    return {
        "token_ids": tokens,
        "stop_conditions": {"max_tokens": max_tokens},
        "eos_token_ids": eos or [],
    }


async def collect(engine: MockerEngine, req: dict, ctx: Context | None = None) -> list[dict]:
    return [chunk async for chunk in engine.generate(req, ctx or Context())]


def test_entry_point() -> None:
    assert load_engine_class("mocker") is MockerEngine


async def test_streams_max_tokens_then_length() -> None:
    engine = await start()
    prompt = [5, 6, 7, 8, 9, 2]
    chunks = await collect(engine, request(prompt, 5, eos=[2]))
    assert chunks[-1] == {"token_ids": [], "finish_reason": "length"}
    tokens = [c["token_ids"] for c in chunks[:-1]]
    assert len(tokens) == 5 and all(len(t) == 1 for t in tokens)
    assert {t[0] for t in tokens} <= {5, 6, 7, 8, 9}
    assert await collect(engine, request(prompt, 0)) == [
        {"token_ids": [], "finish_reason": "length"}
    ]
    await engine.close()


async def test_usage_counts_the_prompt_not_the_output() -> None:
    # The scheduler appends output tokens to the sequence it was given; the usage sent with the
    # first token must still count the prompt alone.
    engine = await start()
    chunks = await collect(engine, request([5, 6, 7, 8, 9], 4))
    usage = chunks[0]["completion_usage"]
    assert usage["prompt_tokens"] == 5
    assert usage["total_tokens"] == 5 + usage["completion_tokens"]
    await engine.close()


async def test_default_max_tokens_and_bad_requests() -> None:
    engine = await start(num_gpu_blocks=128)
    chunks = await collect(engine, request([1, 2, 3], None))
    assert len(chunks) == 257
    with pytest.raises(InvalidRequestError):
        await collect(engine, request([], 3))
    with pytest.raises(ContextLengthExceededError):
        await collect(engine, request(list(range(128 * 4)), 3))
    with pytest.raises(InvalidRequestError) as e:
        await collect(engine, request([1, 2, 3], -1))
    assert e.value.param == "max_tokens"
    # What the mocker cannot honour is refused by name; a sampling knob has no effect.
    guided = {**request([1, 2, 3], 3), "sampling_options": {"guided_decoding": {"regex": "a"}}}
    with pytest.raises(InvalidRequestError) as e:
        await collect(engine, guided)
    assert e.value.param == "guided_decoding"
    biased = {**request([1, 2, 3], 3), "sampling_options": {"logit_bias": {"1": 5}}}
    assert len(await collect(engine, biased)) == 4
    await engine.close()


async def test_output_that_outgrows_the_cache_ends_with_length() -> None:
    engine = await start(num_gpu_blocks=4)
    chunks = await collect(engine, request([1, 2, 3], 100))
    assert chunks[-1] == {"token_ids": [], "finish_reason": "length"}
    assert len(chunks) - 1 == 4 * 4 - 3
    assert engine.kv.active_blocks == 0
    await engine.close()


async def test_concurrent_requests_all_finish() -> None:
    engine = await start(max_num_seqs=2)
    results = await asyncio.gather(*(collect(engine, request([i] * 9, 4)) for i in range(6)))
    assert all(len(r) == 5 and r[-1]["finish_reason"] == "length" for r in results)
    assert engine.kv.active_blocks == 0
    await engine.close()


async def test_cancellation_frees_blocks() -> None:
    engine = await start(speedup_ratio=1000)
    ctx = Context()
    gen = engine.generate(request(list(range(10)), 100_000), ctx)
    assert len((await anext(gen))["token_ids"]) == 1
    assert engine.kv.active_blocks >= 3
    ctx.stop_generating()
    rest = [c async for c in gen]
    assert rest[-1] == {"token_ids": [], "finish_reason": "cancelled"}
    await until(lambda: not engine.scheduler.has_work())
    assert engine.kv.active_blocks == 0
    await engine.close()


async def test_a_consumer_behind_gets_the_tokens_made_so_far_in_one_delta() -> None:
    engine = await start(speedup_ratio=1000)
    gen = engine.generate(
        {**request(list(range(10)), 12), "output_options": {"logprobs": 2}}, Context()
    )
    first = await anext(gen)
    assert len(first["token_ids"]) == 1
    seq = engine.scheduler.running[0]
    await until(lambda: seq.generated == 12)  # not reading meanwhile
    rest = [c async for c in gen]
    assert rest[-1] == {"token_ids": [], "finish_reason": "length"}
    merged = rest[:-1]
    assert len(merged) == 1 and len(merged[0]["token_ids"]) == 11
    assert len(merged[0]["log_probs"]) == len(merged[0]["top_logprobs"]) == 11
    await engine.close()


def test_steps_are_timed_from_the_previous_steps_due_end() -> None:
    assert step_start(10.0, None) == 10.0  # after an idle wait: now
    assert step_start(10.003, 10.0) == 10.0  # woke late: the lateness is not added again
    assert step_start(9.999, 10.0) == 10.0
    late = 10.0 + MAX_CATCH_UP_S + 0.001
    assert step_start(late, 10.0) == late  # a stall is not caught up in a burst


async def test_consumer_going_away_frees_blocks() -> None:
    engine = await start(speedup_ratio=1000)
    gen = engine.generate(request(list(range(10)), 100_000), Context())
    await anext(gen)
    await gen.aclose()
    await until(lambda: engine.kv.active_blocks == 0)
    await engine.close()


async def test_events_drive_a_router_to_this_worker(recorder) -> None:
    rec = recorder(4)
    engine = await start(rec)
    system = list(range(1000, 1016))  # 4 shared blocks
    for q in range(3):
        await collect(engine, request([*system, q, q + 1, q + 2], 6))
    router = KvRouter(block_size=4)
    await rec.flush()
    for event in rec.events:
        assert router.apply_event(event)
    assert router.indexer.blocks_of(WORKER) == engine.kv.cached_hashes()
    assert router.find_matches([*system, 99]).scores == {WORKER: 4}
    worker, overlap = router.select([*system, 42], [1, WORKER, 3], "next")
    assert (worker, overlap) == (WORKER, 4)
    m = engine.metrics()
    assert m["kv_stats"]["gpu_prefix_cache_hit_rate"] > 0.5
    await engine.close()


async def test_metrics_shape() -> None:
    # Realistic pacing: the first request (it fills the 64 blocks in ~250 steps, then ends)
    # is still decoding while the second waits.
    engine = await start(speedup_ratio=1, max_num_seqs=1)
    first = engine.generate(request([1] * 8, 100_000), Context())
    assert (await anext(first))["token_ids"]
    second = asyncio.create_task(anext(engine.generate(request([2] * 8, 100), Context())))
    await until(lambda: len(engine.scheduler.waiting) == 1)
    m = engine.metrics()
    assert m["worker_stats"] == {
        "data_parallel_rank": 0,
        "request_active_slots": 1,
        "request_total_slots": 1,
        "num_requests_waiting": 1,
    }
    kv = m["kv_stats"]
    assert kv["kv_total_blocks"] == 64
    # The first request keeps decoding in the background: 2 prompt blocks and growing.
    assert kv["kv_active_blocks"] >= 3
    assert kv["gpu_cache_usage_perc"] == pytest.approx(kv["kv_active_blocks"] / 64)
    assert kv["gpu_prefix_cache_hit_rate"] == 0.0
    await first.aclose()
    assert (await second)["token_ids"]
    await engine.close()


async def test_the_block_size_routers_hash_with_goes_on_the_card() -> None:
    """Routers read the block size from the card: it must be the one the mocker hashes its
    KV events with. The engine declares it; whoever built the card applies it."""
    card = ModelDeploymentCard.for_name_only("m")
    assert card.kv_cache_block_size == 16
    engine = await MockerEngine.start(
        EngineConfig(model_name="m", card=card, extra_engine_args={"block_size": 32})
    )
    assert card.kv_cache_block_size == 16  # the engine leaves the card alone
    runtime = engine.runtime()
    assert runtime.kv_cache_block_size == 32 == engine.block_size
    assert runtime.kv_events and runtime.load_metrics and runtime.data_parallel_size == 1
    runtime.apply_to(card)
    assert card.kv_cache_block_size == 32
    assert card.runtime_config == {}  # capacity is not declared: admission stays unbounded
    await engine.close()


async def test_closed_engine_refuses_requests() -> None:
    engine = await start()
    await engine.close()
    with pytest.raises(InvalidRequestError):
        await collect(engine, request([1, 2, 3], 2))
