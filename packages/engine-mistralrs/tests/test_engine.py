"""The engine on the real SmolLM2 GGUF, offline, against mistral.rs's own API called directly.

mistral.rs decodes a few tokens per second on a small CPU, so requests here are kept short and the
module is marked slow.
"""

from __future__ import annotations

import asyncio

import mistralrs
import pytest

from dynamo.engines.mistralrs import MistralRsEngine
from dynamo.llm import Context, EngineConfig, EngineError

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture(scope="module")
def direct(smollm2_gguf):
    """A runner built the way mistral.rs's README builds one, independent of the engine."""
    return mistralrs.Runner(
        which=mistralrs.Which.GGUF(
            quantized_model_id=str(smollm2_gguf.parent), quantized_filename=smollm2_gguf.name
        ),
        token_source="none",
    )


@pytest.fixture
async def engine(smollm2_gguf):
    engine = await MistralRsEngine.start(
        EngineConfig("smol", model_path=str(smollm2_gguf), extra_engine_args={"max_seqs": 4})
    )
    yield engine
    await engine.close()


async def collect(agen) -> list[dict]:
    return [c async for c in agen]


def text_of(chunks: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"]["content"] for c in chunks)


async def test_greedy_stream_equals_mistralrs_directly(engine, direct):
    body = {"model": "smol", "messages": QUESTION, "temperature": 0, "max_tokens": 8}
    chunks = await collect(engine.generate(body, Context()))
    theirs = direct.send_chat_completion_request(
        mistralrs.ChatCompletionRequest(
            messages=QUESTION, model="smol", max_tokens=8, temperature=0.0
        )
    )
    assert text_of(chunks) == theirs.choices[0].message.content
    assert text_of(chunks)
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "smol" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == theirs.choices[0].finish_reason
    assert chunks[-1]["usage"]["completion_tokens"] == theirs.usage.completion_tokens


async def test_completion_equals_mistralrs_directly(engine, direct):
    body = {"model": "smol", "prompt": "The capital of France is", "max_tokens": 4}
    chunks = await collect(engine.generate({**body, "temperature": 0}, Context()))
    theirs = direct.send_completion_request(
        mistralrs.CompletionRequest(
            prompt=body["prompt"], model="smol", max_tokens=4, temperature=0.0
        )
    )
    assert [c["object"] for c in chunks] == ["text_completion"]
    assert chunks[0]["choices"][0]["text"] == theirs.choices[0].text


async def test_cancellation_ends_the_stream_within_one_chunk(engine):
    ctx = Context()
    body = {"model": "smol", "messages": QUESTION, "max_tokens": 200, "ignore_eos": True}
    chunks = []
    async for chunk in engine.generate(body, ctx):
        chunks.append(chunk)
        if len(chunks) == 2:
            ctx.stop_generating()
    assert len(chunks) <= 3


async def test_concurrent_requests_both_complete(engine):
    def body(text: str) -> dict:
        return {"messages": [{"role": "user", "content": text}], "max_tokens": 4, "temperature": 0}

    a, b = await asyncio.gather(
        collect(engine.generate(body("Hi"), Context())),
        collect(engine.generate(body("Hello"), Context())),
    )
    assert a[-1]["choices"][0]["finish_reason"] and b[-1]["choices"][0]["finish_reason"]


async def test_model_config_folder_supplies_the_tokenizer(smollm2_gguf, tmp_path):
    from dynamo.llm.model_card import load_card

    # An HF tokenizer folder (tokenizer.json + tokenizer_config.json with the chat template).
    files = load_card(str(smollm2_gguf)).files()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes(files[name])
    engine = await MistralRsEngine.start(
        EngineConfig("smol", model_path=str(smollm2_gguf), model_config=str(tmp_path))
    )
    try:
        body = {"messages": QUESTION, "max_tokens": 3, "temperature": 0}
        chunks = await collect(engine.generate(body, Context()))
        assert chunks[-1]["usage"]["completion_tokens"] == 3
    finally:
        await engine.close()


async def test_not_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(EngineError, match="GGUF file or an HF model folder"):
        await MistralRsEngine.start(EngineConfig("m", model_path=str(tmp_path / "nothing.bin")))


class CountingRunner:
    """The real runner, counting the completion calls made to it and the tokens mistral.rs
    generated for them: work the engine threw away does not show in its output."""

    def __init__(self, runner: mistralrs.Runner) -> None:
        self._runner = runner
        self.calls = 0
        self.generated = 0

    def __getattr__(self, name: str):
        return getattr(self._runner, name)

    def send_completion_request(self, request):
        response = self._runner.send_completion_request(request)
        self.calls += 1
        self.generated += response.usage.completion_tokens
        return response


def texts(chunks: list[dict]) -> list[str]:
    return [c["choices"][0]["text"] for c in chunks]


@pytest.mark.parametrize("how", ["stop_generating", "kill"])
async def test_a_cancelled_completion_stops_generating(direct, how):
    """mistral.rs cannot stop a completion once sent: the engine sends it in slices, and the
    client's going away ends it within one slice instead of at `max_tokens`."""
    runner = CountingRunner(direct)
    engine = MistralRsEngine(runner, "smol", 4)
    engine.completion_slice_tokens = 4
    ctx = Context()
    body = {"prompt": "Once upon a time", "max_tokens": 200, "ignore_eos": True}
    chunks = []
    try:
        async for chunk in engine.generate({**body, "temperature": 0}, ctx):
            chunks.append(chunk)
            getattr(ctx, how)()
    finally:
        await engine.close()
    # The stream ended after the slice the client saw; the generator returned only once the
    # engine's thread had, so nothing more is generated after it: at most the slice under way.
    assert len(chunks) == 1 and chunks[0]["choices"][0]["finish_reason"] is None
    assert 0 < chunks[0]["usage"]["completion_tokens"] <= 4
    assert runner.calls <= 2 and runner.generated <= 8


async def test_a_completion_in_slices_equals_one_call(direct):
    """Greedy text in slices of 4 tokens is the text of one call: a slice keeps its text up to
    its last whitespace, where re-tokenizing it for the next slice gives the model's tokens.

    12 tokens, not more: the 13th to 16th write a number ("approximately 311"), where the model's
    top two digits are so close that the prefill of a longer prompt (a slice's) and one call's
    token-by-token decode, which round differently, can pick different ones (seen once: "321")."""
    engine = MistralRsEngine(direct, "smol", 4)
    engine.completion_slice_tokens = 4
    prompt = "The capital of France is"

    def theirs(max_tokens: int) -> mistralrs.CompletionResponse:
        return direct.send_completion_request(
            mistralrs.CompletionRequest(
                prompt=prompt,
                model="smol",
                max_tokens=max_tokens,
                temperature=0.0,
                ignore_eos=True,
            )
        )

    body = {"prompt": prompt, "max_tokens": 12, "ignore_eos": True, "temperature": 0}
    try:
        chunks = await collect(engine.generate(body, Context()))
        whole = theirs(12)
        full = "".join(texts(chunks))
        assert full == whole.choices[0].text
        finishes = [c["choices"][0]["finish_reason"] for c in chunks]
        assert len(chunks) > 2 and finishes == [None] * (len(chunks) - 1) + ["length"]
        assert chunks[-1]["usage"]["completion_tokens"] == whole.usage.completion_tokens == 12

        # A stop string from the first slice's kept text to past what that slice generated:
        # neither of mistral.rs's calls sees it whole.
        cut, first_slice = len(texts(chunks)[0]), theirs(4).choices[0].text
        stop = full[cut - 1 : len(first_slice) + 2]
        assert full.index(stop) == cut - 1 and first_slice.startswith(full[:cut])
        stopped = await collect(engine.generate({**body, "stop": stop}, Context()))
        assert "".join(texts(stopped)) == full[: cut - 1]
        assert stopped[-1]["choices"][0]["finish_reason"] == "stop"
    finally:
        await engine.close()


def test_mistralrs_still_fails_on_prompts_prefilled_in_one_batch(smollm2_gguf):
    """Why the engine prefills one request at a time: mistral.rs (0.9.5, the newest release on
    2026-11-30) fails when its scheduler prefills two prompts of one length in one batch on the
    CPU GGUF path. When this test fails, a mistral.rs release has fixed it: the engine's
    `_prefill_lock` may then be held for `send_*` calls only (the runner still takes one call at
    a time), so prompts are prefilled in batches, and the README says so."""
    import threading

    runner = mistralrs.Runner(
        which=mistralrs.Which.GGUF(
            quantized_model_id=str(smollm2_gguf.parent), quantized_filename=smollm2_gguf.name
        ),
        token_source="none",
        max_seqs=4,
    )
    send = threading.Lock()
    errors: list[str] = []

    def request(text: str) -> mistralrs.ChatCompletionRequest:
        messages = [{"role": "user", "content": text}]
        return mistralrs.ChatCompletionRequest(
            messages=messages, model="smol", max_tokens=2, temperature=0.0, stream=True
        )

    def chat(country: str) -> None:
        try:
            with send:  # the calls one at a time, their prefills free to share a batch
                stream = iter(runner.send_chat_completion_request(request(country)))
            list(stream)
        except ValueError as e:
            errors.append(str(e))

    # A longer prompt's prefill keeps mistral.rs busy while three prompts of one length (a
    # country each) queue behind it: its scheduler then prefills those three in one batch.
    # (Its stream is read on a thread of its own: mistral.rs waits for a full one to be read.)
    with send:
        busy = iter(runner.send_chat_completion_request(request("Hello there. " * 30)))
    busy_chunks: list = []
    threads = [threading.Thread(target=lambda: busy_chunks.extend(busy))]
    threads += [
        threading.Thread(target=chat, args=(f"What is the capital of {c}?",))
        for c in ("France", "Spain", "Italy")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert busy_chunks
    assert errors and all("input tensor is not contiguous" in e for e in errors), errors
