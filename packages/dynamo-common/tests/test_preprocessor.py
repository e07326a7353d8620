from __future__ import annotations

import pytest

from dynamo.llm.errors import ContextLengthExceededError, InvalidRequestError
from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.preprocessor import OpenAIPreprocessor
from dynamo.llm.protocols import ChatCompletionRequest, CompletionRequest, PreprocessedRequest


@pytest.fixture
def pre(smollm2_card) -> OpenAIPreprocessor:
    return OpenAIPreprocessor(smollm2_card)


def chat(**kw) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "Hi"}], **kw}
    )


def test_chat_is_templated_and_tokenized(pre, smollm2_card):
    out = pre.preprocess_chat(chat())
    text = smollm2_card.tokenizer().decode(out["token_ids"], skip_special_tokens=False)
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    PreprocessedRequest.model_validate(out)  # the wire shape upstream workers expect


def test_stop_and_sampling_options(pre):
    out = pre.preprocess_chat(
        chat(
            max_completion_tokens=5,
            max_tokens=99,
            stop="END",
            temperature=0.5,
            top_p=0.9,
            seed=7,
            min_tokens=2,
            nvext={"top_k": 40, "repetition_penalty": 1.1},
        )
    )
    assert out["stop_conditions"] == {
        "max_tokens": 5,
        "stop": ["END"],
        "min_tokens": 2,
        "ignore_eos": False,
        "stop_token_ids_hidden": [2],
    }
    assert out["sampling_options"] == {
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 7,
        "top_k": 40,
        "repetition_penalty": 1.1,
    }
    assert out["eos_token_ids"] == [2]


def test_root_level_extensions_win_over_nvext(pre):
    out = pre.preprocess_chat(
        chat(ignore_eos=True, top_k=5, nvext={"ignore_eos": False, "top_k": 50})
    )
    assert out["stop_conditions"]["ignore_eos"] is True
    assert "stop_token_ids_hidden" not in out["stop_conditions"] and out["eos_token_ids"] == []
    assert out["sampling_options"]["top_k"] == 5


def test_max_tokens_defaults_to_and_is_clamped_by_the_context(smollm2_card):
    card = ModelDeploymentCard.from_json(smollm2_card.to_json())
    card.context_length = 100
    pre = OpenAIPreprocessor(card)
    n = len(pre.preprocess_chat(chat())["token_ids"])
    assert pre.preprocess_chat(chat())["stop_conditions"]["max_tokens"] == 100 - n
    assert pre.preprocess_chat(chat(max_tokens=10_000))["stop_conditions"]["max_tokens"] == 100 - n
    with pytest.raises(ContextLengthExceededError, match="maximum context length is 100"):
        pre.preprocess_completion(CompletionRequest(model="m", prompt="word " * 200))


def test_completion_prompts(pre, smollm2_card):
    assert pre.preprocess_completion(CompletionRequest(model="m", prompt="Hello world"))[
        "token_ids"
    ] == [19556, 905]
    assert pre.preprocess_completion(CompletionRequest(model="m", prompt=[19556, 905]))[
        "token_ids"
    ] == [19556, 905]
    with pytest.raises(InvalidRequestError, match="token ids"):
        pre.preprocess_completion(CompletionRequest(model="m", prompt=[10**9]))


def test_template_refusal_is_a_bad_request(smollm2_card):
    card = ModelDeploymentCard.from_json(smollm2_card.to_json())
    card.chat_template = "{{ raise_exception('no system messages, please') }}"
    with pytest.raises(InvalidRequestError, match="no system messages"):
        OpenAIPreprocessor(card).preprocess_chat(chat())


def test_token_data_skips_the_template(pre):
    assert pre.preprocess_chat(chat(nvext={"token_data": [5, 6]}))["token_ids"] == [5, 6]


def test_template_kwargs_may_name_tools_and_generation_prompt(pre, smollm2_card):
    tok = smollm2_card.tokenizer()
    with_prompt = tok.decode(pre.preprocess_chat(chat())["token_ids"], skip_special_tokens=False)
    without = pre.preprocess_chat(
        chat(chat_template_kwargs={"add_generation_prompt": False, "tools": []})
    )
    text = tok.decode(without["token_ids"], skip_special_tokens=False)
    assert with_prompt.endswith("<|im_start|>assistant\n") and not text.endswith(
        "<|im_start|>assistant\n"
    )


MEDIUM = " ".join(f"word{i % 997}" for i in range(1500))  # over OFFLOAD_MIN_CHARS, in context
LONG = " ".join(f"word{i % 997} piece{i % 13}" for i in range(20_000))  # ~240k chars


async def test_async_preprocessing_equals_sync(pre):
    from dynamo.llm.preprocessor import OFFLOAD_MIN_CHARS

    assert len(MEDIUM) > OFFLOAD_MIN_CHARS
    for content in ("Hi", MEDIUM):  # inline and offloaded
        request = chat(messages=[{"role": "user", "content": content}], max_tokens=3)
        assert await pre.preprocess_chat_async(request) == pre.preprocess_chat(request)
        completion = CompletionRequest.model_validate({"model": "m", "prompt": content})
        assert await pre.preprocess_completion_async(completion) == pre.preprocess_completion(
            completion
        )
    ids = CompletionRequest.model_validate({"model": "m", "prompt": [1, 2, 3]})
    assert (await pre.preprocess_completion_async(ids))["token_ids"] == [1, 2, 3]
    with pytest.raises(InvalidRequestError, match="must not be empty"):
        await pre.preprocess_completion_async(
            CompletionRequest.model_validate({"model": "m", "prompt": ""})
        )


async def test_long_prompt_is_tokenized_off_the_event_loop(pre):
    # Tokenizing LONG takes tens of milliseconds. On the loop, a concurrent task would not run
    # at all until it finished; off the loop (GIL released), it keeps being scheduled.
    import asyncio

    done = False
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    start = ticks
    ids = await pre.encode_async(LONG)
    done = True
    await task
    assert len(ids) > 20_000
    assert ticks - start > 10


def test_text_parts_render_as_the_string_they_spell(pre):
    """Issue 18 item 10: `[{"type": "text", "text": "Hi"}]` (LangChain, many SDKs) was a 400
    chat-template TypeError on SmolLM2, whose template adds content to strings."""
    parts = [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]
    as_parts = chat(messages=[{"role": "user", "content": parts}])
    as_string = chat(messages=[{"role": "user", "content": "Hi\nthere"}])
    assert pre.preprocess_chat(as_parts)["token_ids"] == pre.preprocess_chat(as_string)["token_ids"]


@pytest.mark.parametrize(
    ("part", "needle"),
    [
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}, "images"),
        ({"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}, "audio"),
        ({"type": "hologram"}, "'hologram'"),
    ],
)
def test_parts_that_are_not_text_are_refused_by_name(pre, part, needle):
    """Issue 18 item 10: a token-level prompt is text only; an image must not vanish silently."""
    content = [{"type": "text", "text": "what is this?"}, part]
    request = chat(messages=[{"role": "user", "content": content}])
    with pytest.raises(InvalidRequestError, match=needle) as refused:
        pre.preprocess_chat(request)
    assert refused.value.param == "messages[0].content[1]"
    with pytest.raises(InvalidRequestError, match=needle):  # raw prompts too
        pre.preprocess_chat(chat(messages=request.messages, nvext={"use_raw_prompt": True}))


@pytest.mark.parametrize("ids", [[5, -1], [5, 10**9]])
def test_token_data_outside_the_vocabulary_is_refused(pre, ids):
    """Issue 18 item 9: a negative id was a 500, ids past the vocabulary were passed on."""
    with pytest.raises(InvalidRequestError, match="token ids") as refused:
        pre.preprocess_chat(chat(nvext={"token_data": ids}))
    assert refused.value.param == "nvext.token_data"


def test_context_length_exceeded_names_the_prompt_field(smollm2_card):
    """Issue 18 item 13: on /v1/completions it said `param: "messages"`."""
    card = ModelDeploymentCard.from_json(smollm2_card.to_json())
    card.context_length = 20
    pre = OpenAIPreprocessor(card)
    with pytest.raises(ContextLengthExceededError) as completion:
        pre.preprocess_completion(CompletionRequest(model="m", prompt="word " * 50))
    assert completion.value.param == "prompt"
    with pytest.raises(ContextLengthExceededError) as chat_error:
        pre.preprocess_chat(chat(messages=[{"role": "user", "content": "word " * 50}]))
    assert chat_error.value.param == "messages"


def test_generation_config_gives_the_defaults_a_request_leaves_out(smollm2_card):
    card = ModelDeploymentCard.from_json(smollm2_card.to_json())
    card.gen_config = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "do_sample": True}
    pre = OpenAIPreprocessor(card)
    sampling = pre.preprocess_chat(chat(temperature=0.1))["sampling_options"]
    assert sampling == {"temperature": 0.1, "top_p": 0.95, "top_k": 20}


def test_wire_options_for_parity_fields(pre):
    out = pre.preprocess_chat(
        chat(
            logprobs=True,
            top_logprobs=3,
            logit_bias={"5": -100},
            stop_token_ids=[7],
            skip_special_tokens=True,
            n=4,
            response_format={"type": "json_object"},
        )
    )
    assert out["output_options"] == {"logprobs": 3, "skip_special_tokens": True}
    assert out["stop_conditions"]["stop_token_ids"] == [7]
    assert out["sampling_options"]["logit_bias"] == {"5": -100}
    from dynamo.runtime.codec import decode_request, encode_request

    assert decode_request(encode_request("r", out))[1] == out  # crosses the network as is
    assert out["sampling_options"]["guided_decoding"] == {"json": {"type": "object"}}
    assert "n" not in out["sampling_options"]  # choices are fanned out by the pipeline
    PreprocessedRequest.model_validate(out)
    completion = pre.preprocess_completion(CompletionRequest(model="m", prompt="x", logprobs=0))
    assert completion["output_options"] == {"logprobs": 0}
    assert completion["stop_conditions"]["max_tokens"] == 16
