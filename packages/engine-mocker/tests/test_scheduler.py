"""The simulated scheduler, step by step: prefix reuse, eviction, watermark, queueing,
chunked prefill, preemption, and events that reproduce the cache in a router's indexer."""

import random

import pytest

from dynamo.engines.mocker import KvCache, MockerOptions, MockScheduler, decode_ms, prefill_ms
from dynamo.engines.mocker._scheduler import Sequence_
from dynamo.llm.kv.events import Removed, Stored
from dynamo.llm.kv.hashing import local_block_hashes, sequence_hashes

WORKER = 7


def make(recorder, **options: object) -> tuple[MockScheduler, object]:
    opts = MockerOptions(**{"block_size": 4, "watermark": 0.0, "seed": 0, **options})  # type: ignore[arg-type]
    rec = recorder(opts.block_size)
    kv = KvCache(opts.num_gpu_blocks, opts.block_size, rec)
    return MockScheduler(opts, kv), rec


def submit(sched: MockScheduler, rid: str, prompt: list[int], max_tokens: int = 2) -> list:
    out: list = []
    sched.add(Sequence_(rid, list(prompt), max_tokens, out.append))
    return out


def run_step(sched: MockScheduler) -> None:
    step = sched.schedule()
    sched.complete(step)
    sched.kv.flush_events()


def drain(sched: MockScheduler, limit: int = 10_000) -> None:
    for _ in range(limit):
        if not sched.has_work():
            return
        run_step(sched)
    raise AssertionError("scheduler made no progress")


def test_step_time_formulas() -> None:
    assert prefill_ms(1000) == pytest.approx(4.209989e-7 * 1e6 + 15.18344 + 16.50142)
    assert decode_ms(0.5) == pytest.approx(-25.74 * 0.25 + 54.01 * 0.5 + 5.74)
    sched, _ = make(lambda bs: None)
    step = sched.schedule()
    assert sched.step_ms(step) == 0.0


def test_step_time_is_upstreams_pass() -> None:
    """Upstream 1.6.1's pass: prefill of the new prompt tokens, plus one decode when a request
    emits a token that is not its prefill's first; decode usage is the decoding requests' tokens
    over the cache's capacity in tokens."""
    sched, _ = make(lambda bs: None, num_gpu_blocks=100)  # capacity 400 tokens
    capacity = 100 * 4
    a: list = []
    sched.add(Sequence_("a", list(range(100, 110)), 50, a.append))
    step = sched.schedule()
    # A prompt alone: its prefill only (its first token comes out of the prefill).
    assert sched.step_ms(step) == pytest.approx(prefill_ms(10))
    sched.complete(step)
    step = sched.schedule()
    # Decoding alone: one decode at 11 tokens of 400, not the 3 blocks of 100 it holds.
    assert sched.step_ms(step) == pytest.approx(decode_ms(11 / capacity))
    sched.complete(step)
    # A second prompt beside the decoding one: a mixed pass, prefill plus decode.
    sched.add(Sequence_("b", list(range(200, 206)), 50, lambda t: None))
    step = sched.schedule()
    assert len(step.prefill) == 1 and len(step.decode) == 1
    assert sched.step_ms(step) == pytest.approx(prefill_ms(6) + decode_ms(12 / capacity))
    # Two prompts in one pass: upstream's integer means (11 and 4 new tokens: 2 * (7 - 0)).
    sched2, _ = make(lambda bs: None)
    sched2.add(Sequence_("c", list(range(11)), 5, lambda t: None))
    sched2.add(Sequence_("d", list(range(50, 54)), 5, lambda t: None))
    step = sched2.schedule()
    assert sched2.step_ms(step) == pytest.approx(prefill_ms(2 * 7))
    assert prefill_ms(0) == 0.0
    assert decode_ms(2.0) == decode_ms(1.0) and decode_ms(-1.0) == 1.0


def test_recompute_after_preemption_is_a_decode_not_a_prefill() -> None:
    """Output tokens recomputed after a preemption are no prompt tokens (upstream counts prompt
    tokens only in the prefill), and the token that follows is a decode."""
    sched, _ = make(lambda bs: None)
    seq = Sequence_("a", [1, 2, 3, 4, 5], 10, lambda t: None)
    sched.add(seq)
    sched.complete(sched.schedule())
    sched.complete(sched.schedule())
    assert seq.generated == 2
    sched.preempt(seq)
    step = sched.schedule()
    # Its first block is still cached: 3 tokens recomputed, one prompt token and two outputs.
    assert step.prefill == [(seq, 3)]
    assert sched.step_ms(step) == pytest.approx(
        prefill_ms(1) + decode_ms(7 / (sched.kv.num_blocks * 4))
    )


async def test_second_identical_prompt_reuses_the_prefix(recorder) -> None:
    sched, _ = make(recorder)
    prompt = list(range(100, 114))  # 14 tokens: 3 full blocks + 2
    submit(sched, "a", prompt)
    drain(sched)
    assert sched.stats.computed_prefill_tokens == 14
    submit(sched, "b", prompt)
    drain(sched)
    assert sched.stats.computed_prefill_tokens == 14 + 2
    assert sched.stats.cached_tokens == 12
    # A prompt that is all full cached blocks still computes its last token.
    submit(sched, "c", prompt[:12])
    drain(sched)
    assert sched.stats.computed_prefill_tokens == 14 + 2 + 1


async def test_eviction_under_pressure_takes_the_lru_tail_first(recorder) -> None:
    sched, rec = make(recorder, num_gpu_blocks=6)
    a = list(range(1, 9))  # 2 blocks
    b = list(range(101, 117))  # 4 blocks
    submit(sched, "a", a, max_tokens=1)
    drain(sched)
    a_hashes = sequence_hashes(local_block_hashes(a, 4))
    assert sched.kv.cached_hashes() == set(a_hashes)
    submit(sched, "b", b, max_tokens=1)
    drain(sched)
    b_hashes = sequence_hashes(local_block_hashes(b, 4))
    # b needed 4 blocks + 1 for its output token: one of a's two cached blocks had to go.
    assert sched.kv.cached_hashes() == {a_hashes[0], *b_hashes}
    assert sched.kv.evictions == 1
    await rec.flush()
    assert [e.data for e in rec.events if isinstance(e.data, Removed)] == [Removed((a_hashes[1],))]
    assert (await rec.replay()).blocks_of(WORKER) == sched.kv.cached_hashes()


@pytest.mark.parametrize(("watermark", "admitted"), [(0.2, 1), (0.0, 2)])
async def test_watermark_holds_back_admission(recorder, watermark: float, admitted: int) -> None:
    sched, _ = make(recorder, num_gpu_blocks=10, watermark=watermark)
    submit(sched, "a", list(range(24)), max_tokens=5)  # 6 blocks, +1 for its first token
    submit(sched, "b", list(range(100, 108)), max_tokens=5)  # 2 more: 1 left < 2 kept free
    run_step(sched)
    assert len(sched.running) == admitted
    assert len(sched.waiting) == 2 - admitted
    drain(sched)
    assert sched.stats.finished == 2


async def test_max_num_seqs_queues_the_rest(recorder) -> None:
    sched, _ = make(recorder, max_num_seqs=2)
    outs = [submit(sched, f"r{i}", [i] * 5, max_tokens=3) for i in range(3)]
    run_step(sched)
    assert [s.request_id for s in sched.running] == ["r0", "r1"]
    assert [s.request_id for s in sched.waiting] == ["r2"]
    drain(sched)
    for out in outs:
        assert len(out) == 4 and out[-1] is None


async def test_chunked_prefill(recorder) -> None:
    sched, _ = make(recorder, max_num_batched_tokens=8)
    out = submit(sched, "a", list(range(20)), max_tokens=1)
    chunks = []
    while not out:
        step = sched.schedule()
        chunks.append(step.prefill_tokens)
        sched.complete(step)
    assert chunks == [8, 8, 4]


async def test_decode_shares_the_token_budget(recorder) -> None:
    sched, _ = make(recorder, max_num_batched_tokens=8)
    submit(sched, "a", list(range(4)), max_tokens=10)
    run_step(sched)  # a prefilled, now decoding
    submit(sched, "b", list(range(100, 120)), max_tokens=1)
    step = sched.schedule()
    assert [s.request_id for s in step.decode] == ["a"]
    assert step.prefill_tokens == 7


async def test_preemption_when_decode_runs_out_of_blocks(recorder) -> None:
    sched, rec = make(recorder, num_gpu_blocks=4)
    outs = [submit(sched, x, [n] * 4, max_tokens=8) for n, x in enumerate("ab")]
    drain(sched)
    assert sched.stats.preemptions >= 1
    for out in outs:
        assert len(out) == 9 and out[-1] is None
    assert sched.kv.active_blocks == 0
    assert (await rec.replay()).blocks_of(WORKER) == sched.kv.cached_hashes()


async def test_event_stream_reproduces_the_cache(recorder) -> None:
    """Random shared-prefix traffic through a small cache: the router's view stays exact."""
    rng = random.Random(5)
    sched, rec = make(recorder, num_gpu_blocks=40, max_num_seqs=4, max_num_batched_tokens=16)
    prefixes = [[rng.randrange(1000) for _ in range(12)] for _ in range(4)]
    for i in range(60):
        prompt = rng.choice(prefixes) + [rng.randrange(1000) for _ in range(rng.randrange(0, 10))]
        submit(sched, f"r{i}", prompt, max_tokens=rng.randrange(1, 9))
        if i % 3 == 0:
            run_step(sched)
    drain(sched)
    assert sched.kv.evictions > 0
    idx = await rec.replay()
    stored = [e for e in rec.events if isinstance(e.data, Stored)]
    # Prompt tails and promoted output blocks continue a parent block.
    assert any(e.data.parent_hash is not None for e in stored)
    assert idx.blocks_of(WORKER) == sched.kv.cached_hashes()
    for prefix in prefixes:
        held = 0
        for h in sequence_hashes(local_block_hashes(prefix, 4)):
            if not sched.kv.is_cached(h):
                break
            held += 1
        assert idx.find_matches(local_block_hashes(prefix, 4)).scores.get(WORKER, 0) == held


def test_cancelled_requests_leave_and_free_blocks() -> None:
    opts = MockerOptions(block_size=4, watermark=0.0, seed=0)
    sched = MockScheduler(opts, KvCache(opts.num_gpu_blocks, 4))
    out: list = []
    seq = Sequence_("a", list(range(10)), 100, out.append)
    sched.add(seq)
    run_step(sched)
    assert sched.kv.active_blocks == 3
    seq.cancelled = True
    sched.drop_cancelled()
    assert not sched.has_work()
    assert sched.kv.active_blocks == 0
    assert out[-1] is None
