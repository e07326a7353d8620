"""The engine on the real SmolLM2 GGUF: against llama-cpp-python called directly, and batched
against alone."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time

import llama_cpp
import pytest

from dynamo.engines.llamacpp import LlamaCppEngine, _native
from dynamo.engines.llamacpp._options import DEFAULT_PARALLEL
from dynamo.llm import Context, EngineConfig, EngineError
from dynamo.llm.errors import ContextLengthExceededError, EngineFailedError, InvalidRequestError
from dynamo.llm.model_card import load_card

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Name three colours.",
    "How do plants make food?",
    "Count from one to ten.",
    "What is two plus two?",
    "Tell me a joke about cats.",
    "Why is the sky blue?",
]


@pytest.fixture(scope="module")
def card(smollm2_gguf):
    return load_card(str(smollm2_gguf))


async def start(card, gguf, context_length: int | None = 1024, **extra) -> LlamaCppEngine:
    config = EngineConfig(
        "smol",
        card=card,
        model_path=str(gguf),
        context_length=context_length,
        extra_engine_args=extra,
    )
    return await LlamaCppEngine.start(config)


@pytest.fixture
async def engine(card, smollm2_gguf):
    engine = await start(card, smollm2_gguf, n_parallel=8)
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


def request(ids: list[int], max_tokens: int | None = 16, **sampling) -> dict:
    return {
        "token_ids": ids,
        "stop_conditions": {"max_tokens": max_tokens},
        "sampling_options": {"temperature": 0.0, **sampling},
        "eos_token_ids": [2],
    }


async def collect(agen) -> list[dict]:
    return [o async for o in agen]


def tokens(out: list[dict]) -> list[int]:
    return [t for o in out for t in o["token_ids"]]


async def run(engine, ids, max_tokens=16, **sampling) -> list[int]:
    return tokens(await collect(engine.generate(request(ids, max_tokens, **sampling), Context())))


async def wait_idle(engine) -> None:
    async with asyncio.timeout(30):
        while engine.in_flight or engine.free_slots != engine.max_num_seqs:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_greedy_matches_llama_cpp_directly(engine, card, smollm2_gguf):
    ids = prompt_ids(card, QUESTIONS[0])
    out = await collect(engine.generate(request(ids, 24), Context()))
    direct = llama_cpp.Llama(
        model_path=str(smollm2_gguf), n_ctx=1024, flash_attn=True, verbose=False
    )
    theirs = []
    for token in direct.generate(ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0):
        if token == 2 or len(theirs) == 24:
            break
        theirs.append(token)
    direct.close()
    assert tokens(out) == theirs and theirs
    assert out[-1]["finish_reason"] in ("eos", "length")


async def test_eight_prompts_at_once_equal_each_alone(engine, card):
    prompts = [prompt_ids(card, q) for q in QUESTIONS]
    alone = [await run(engine, ids, 24) for ids in prompts]
    together = await asyncio.gather(*(run(engine, ids, 24) for ids in prompts))
    assert together == alone
    assert len({tuple(t) for t in alone}) == len(prompts)  # really different requests


async def test_greedy_does_not_depend_on_earlier_requests(engine, card):
    """Issue 18 item 6: the same greedy request gives the same tokens whatever ran before. The
    old engine reused the cached prompt and decoded only its last token again, alone, which
    took another attention kernel and changed this prompt's first token."""
    joke = prompt_ids(card, QUESTIONS[6])
    fresh = await run(engine, joke, 16)
    assert await run(engine, joke, 16) == fresh  # right after itself
    shared = "You are a helpful assistant who answers briefly. "
    await run(engine, prompt_ids(card, shared + QUESTIONS[3]), 16)
    second = prompt_ids(card, shared + QUESTIONS[7])
    alone = await run(engine, second, 16)
    await run(engine, prompt_ids(card, shared + QUESTIONS[1]), 16)
    assert await run(engine, second, 16) == alone  # after a prompt with the same start


async def test_max_tokens_per_sequence(engine, card):
    short, long = prompt_ids(card, QUESTIONS[4]), prompt_ids(card, QUESTIONS[1])
    alone = await run(engine, long, 20)
    a, b = await asyncio.gather(
        collect(engine.generate(request(short, 3, ignore_eos=True), Context())),
        collect(engine.generate(request(long, 20), Context())),
    )
    assert len(tokens(a)) == 3 and a[-1] == {"token_ids": [], "finish_reason": "length"}
    assert tokens(b) == alone


async def test_ignore_eos_and_min_tokens(engine, card):
    ids = prompt_ids(card, "Say hi.")
    natural = await collect(engine.generate(request(ids, 100), Context()))
    assert natural[-1]["finish_reason"] == "eos"
    n = len(tokens(natural))
    req = request(ids, n + 5)
    req["stop_conditions"]["ignore_eos"] = True
    assert len(tokens(await collect(engine.generate(req, Context())))) == n + 5
    # Before min_tokens the EOS token is never sampled (not sampled and dropped).
    req = request(ids, n + 20)
    req["stop_conditions"]["min_tokens"] = n + 3
    out = tokens(await collect(engine.generate(req, Context())))
    assert len(out) >= n + 3 and 2 not in out


async def test_cancellation_per_sequence(engine, card):
    """One of three concurrent requests is cancelled mid-stream: it ends at the next step with
    `cancelled`, and the others' output is what it is alone."""
    essay, other = prompt_ids(card, "Write a long essay"), prompt_ids(card, QUESTIONS[6])
    alone = await run(engine, other, 20)
    ctx = Context()
    seen: list[dict] = []

    async def cancelled_one():
        async for o in engine.generate(request(essay, 500), ctx):
            seen.append(o)
            if len(seen) == 3:
                ctx.stop_generating()

    _, b, c = await asyncio.gather(cancelled_one(), run(engine, other, 20), run(engine, other, 20))
    # Tokens already on their way to the reader still arrive; then it ends, far short of 500.
    assert len(seen) <= 10 and seen[-1]["finish_reason"] == "cancelled"
    assert b == alone and c == alone


async def test_disconnecting_clients_leak_nothing(engine, card):
    """Many short requests whose readers go away after the first token: every slot and every
    KV cell comes back."""
    ids = [prompt_ids(card, q) for q in QUESTIONS]

    async def disconnect(i: int) -> None:
        stream = engine.generate(request(ids[i % len(ids)], 300, ignore_eos=True), Context())
        await anext(stream)
        await stream.aclose()

    for _ in range(3):
        await asyncio.gather(*(disconnect(i) for i in range(12)))
    await wait_idle(engine)
    assert await engine.kv_tokens_in_use() == 0
    assert await run(engine, ids[0], 4)  # and it still serves


async def test_request_cancelled_while_waiting_never_runs(card, smollm2_gguf):
    engine = await start(card, smollm2_gguf, n_parallel=1)
    try:
        essay = prompt_ids(card, "Write a long essay")
        first = engine.generate(request(essay, 40), Context())
        await anext(first)  # the only slot is taken
        ctx = Context()
        queued = asyncio.ensure_future(collect(engine.generate(request(essay, 8), ctx)))
        await asyncio.sleep(0.05)
        assert engine.in_flight == 2 and engine.free_slots == 0
        ctx.stop_generating()
        await collect(first)
        assert await queued == [{"token_ids": [], "finish_reason": "cancelled"}]
    finally:
        await engine.close()


async def test_seeded_sampling_is_reproducible_alone_and_batched(engine, card):
    ids = prompt_ids(card, "Tell me a story")
    a = await run(engine, ids, 12, temperature=1.0, seed=42)
    b = await run(engine, ids, 12, temperature=1.0, seed=42)
    c, _ = await asyncio.gather(
        run(engine, ids, 12, temperature=1.0, seed=42),
        run(engine, prompt_ids(card, QUESTIONS[2]), 12),
    )
    assert a == b == c


async def test_a_seed_stays_with_its_request(engine, card):
    """Issue 18 item 4: after a seeded request, unseeded sampling is random again."""
    ids = prompt_ids(card, "Tell me a story about a dragon")
    await run(engine, ids, 32, temperature=1.0, seed=7)
    unseeded = [tuple(await run(engine, ids, 32, temperature=1.0)) for _ in range(3)]
    assert len(set(unseeded)) > 1


async def test_max_tokens_below_one_is_refused(engine, card):
    """Issue 18 item 8: max_tokens 0 used to generate a token."""
    with pytest.raises(InvalidRequestError) as e:
        await collect(engine.generate(request(prompt_ids(card, "Hi"), 0), Context()))
    assert e.value.param == "max_tokens"


async def test_bad_prompts_are_refused(engine, card):
    with pytest.raises(InvalidRequestError, match=r"in \[0, 49152\)"):
        await collect(engine.generate(request([1, 49152]), Context()))
    with pytest.raises(InvalidRequestError, match="no tokens"):
        await collect(engine.generate(request([]), Context()))
    with pytest.raises(ContextLengthExceededError):
        await collect(engine.generate(request([1] * 1024), Context()))


async def test_no_max_tokens_stops_at_the_context(card, smollm2_gguf):
    engine = await start(card, smollm2_gguf, context_length=None, n_ctx=40, n_parallel=2)
    try:
        ids = prompt_ids(card, "Write a long essay")
        req = request(ids, None)
        req["stop_conditions"]["ignore_eos"] = True
        assert len(tokens(await collect(engine.generate(req, Context())))) == 40 - len(ids)
    finally:
        await engine.close()


async def test_card_gets_the_engines_context_and_capacity(smollm2_gguf):
    """Issue 18 item 7: the card's context length is what the engine holds, so the frontend's
    400 for long prompts is right; `{"n_ctx": 64}` serves (it used to fail with a numpy error).
    The engine declares it (`runtime()`); whoever built the card applies it."""
    card = load_card(str(smollm2_gguf))
    assert card.context_length == 8192  # the model's
    engine = await start(card, smollm2_gguf, context_length=None, n_ctx=64, n_parallel=3)
    try:
        assert card.context_length == 8192  # the engine leaves the card alone
        runtime = engine.runtime()
        assert not runtime.publishes
        runtime.apply_to(card)
        assert card.context_length == engine.context_length == 64
        assert card.runtime_config["max_num_seqs"] == engine.max_num_seqs == 3
        assert await run(engine, prompt_ids(card, "Hi"), 4)
        with pytest.raises(ContextLengthExceededError):
            await collect(engine.generate(request([1] * 64), Context()))
    finally:
        await engine.close()


@pytest.mark.parametrize(("available", "slots"), [(None, DEFAULT_PARALLEL), (0, 1)])
async def test_slots_default_to_what_the_machine_holds(
    card, smollm2_gguf, monkeypatch, available, slots
):
    """Issue 13: without `n_parallel`, as many slots (at most llama-server's 4) as half of the
    memory left once the model is in holds; one when memory is short, 4 when it is unknown."""
    monkeypatch.setattr(_native, "available_memory", lambda: available)
    engine = await start(card, smollm2_gguf, context_length=None, n_ctx=256)
    try:
        assert engine.max_num_seqs == slots == engine.runtime().runtime_config["max_num_seqs"]
        assert await run(engine, prompt_ids(card, "Hi"), 3)
    finally:
        await engine.close()


@pytest.mark.parametrize(
    "extra", [{"n_ctx": "abc"}, {"n_ctx": 0}, {"n_parallel": -1}, {"n_threads": "x"}]
)
async def test_bad_settings_fail_at_start(card, smollm2_gguf, extra):
    with pytest.raises(EngineError):
        await start(card, smollm2_gguf, context_length=None, **extra)


async def test_close_mid_stream_stops_within_a_step(card, smollm2_gguf):
    """Issue 18 item 3: closing the engine with a stream in flight ends that stream at once
    (with an error) instead of waiting for its generation to finish."""
    engine = await start(card, smollm2_gguf, n_parallel=2)
    stream = engine.generate(request(prompt_ids(card, "Write a long essay"), 900), Context())
    await anext(stream)
    started = time.monotonic()
    await asyncio.wait_for(engine.close(), 5)
    with pytest.raises(EngineFailedError, match="shut down"):
        await asyncio.wait_for(collect(stream), 5)
    assert time.monotonic() - started < 5


async def test_prefix_cache_reuses_cells_and_keeps_greedy_output(card, smollm2_gguf, engine):
    """With `prefix_cache`, a finished request's cells stay for a later prompt with the same
    start; on this build (flash attention) the output is the same as without reuse."""
    cached = await start(card, smollm2_gguf, n_parallel=2, prefix_cache=True)
    try:
        shared = "You are a helpful assistant who answers briefly. "
        first = prompt_ids(card, shared + QUESTIONS[0])
        req = request(first, 8)
        req["stop_conditions"]["ignore_eos"] = True
        await collect(cached.generate(req, Context()))
        await wait_idle(cached)
        assert await cached.kv_tokens_in_use() == len(first) + 8 - 1
        second = prompt_ids(card, shared + QUESTIONS[7])
        assert await run(cached, second, 24) == await run(engine, second, 24)
    finally:
        await cached.close()


def text_of(card, ids: list[int]) -> str:
    return card.tokenizer().decode(ids, skip_special_tokens=True)


async def test_structured_output_json_choice_regex(engine, card):
    """Issue 15 on llama.cpp: guided_decoding constrains sampling through llama.cpp's grammar
    sampler, per sequence (three constraints decoded in one batch)."""
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    ask = prompt_ids(card, "Give me a city and its population as JSON.")
    reqs = [
        request(ask, 60, guided_decoding={"json": schema}),
        request(
            prompt_ids(card, "Is the sky blue?"), 10, guided_decoding={"choice": ["yes", "no"]}
        ),
        request(prompt_ids(card, "Pick a number."), 10, guided_decoding={"regex": "[0-9]{3}"}),
    ]
    outs = await asyncio.gather(*(collect(engine.generate(r, Context())) for r in reqs))
    assert all(o[-1]["finish_reason"] == "eos" for o in outs)
    as_json = json.loads(text_of(card, tokens(outs[0])))
    assert set(as_json) == {"city", "population"} and isinstance(as_json["population"], int)
    assert text_of(card, tokens(outs[1])) in ("yes", "no")
    assert re.fullmatch(r"[0-9]{3}", text_of(card, tokens(outs[2])))


async def test_bad_grammar_is_a_request_error(engine, card):
    req = request(prompt_ids(card, "Hi"), 5, guided_decoding={"grammar": "root ::= ("})
    with pytest.raises(InvalidRequestError) as e:
        await collect(engine.generate(req, Context()))
    assert e.value.param == "guided_decoding"
    assert await run(engine, prompt_ids(card, "Hi"), 3)  # and nothing is left behind


async def test_logprobs_per_token(engine, card):
    """Issue 15 on llama.cpp: with output_options.logprobs = k, every token comes with its log
    probability and the k most likely tokens; greedy picks the best one."""
    req = request(prompt_ids(card, QUESTIONS[0]), 6)
    req["output_options"] = {"logprobs": 3}
    out = [o for o in await collect(engine.generate(req, Context())) if o["token_ids"]]
    assert out
    for delta in out:
        [token], [logprob], [top] = delta["token_ids"], delta["log_probs"], delta["top_logprobs"]
        assert [t["rank"] for t in top] == [1, 2, 3]
        assert top[0]["token_id"] == token and top[0]["logprob"] == logprob
        assert top[0]["logprob"] >= top[1]["logprob"] >= top[2]["logprob"]
        assert sum(math.exp(t["logprob"]) for t in top) <= 1.0 + 1e-6
    assert tokens(out) == await run(engine, prompt_ids(card, QUESTIONS[0]), 6)
    req["output_options"] = {"logprobs": 0}
    first = (await collect(engine.generate(req, Context())))[0]
    assert first["top_logprobs"] == [[]] and first["log_probs"][0] < 0
    req["output_options"] = {"logprobs": 21}
    with pytest.raises(InvalidRequestError):
        await collect(engine.generate(req, Context()))
