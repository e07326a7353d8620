"""OpenAI API conformance through the real `openai` SDK, in process (httpx.ASGITransport over
`build_app`), streaming and unary, on the mocker (made-up log probabilities) and echo_core (its
answer is the prompt, so with `nvext.use_raw_prompt` a test chooses exactly what the "model"
says: tool-call markup, think tags).

Each feature is checked where an engine honours it and refused (400 naming the field) where it
does not."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from dynamo.engines.echo import EchoCoreEngine, EchoFullEngine
from dynamo.engines.mocker import MockerEngine
from dynamo.frontend.http.app import AppState, build_app
from dynamo.llm import EngineConfig
from dynamo.llm.model_card import load_card
from dynamo.llm.model_type import ModelType
from dynamo.llm.pipeline import BackendModel, OpenAIEngineModel
from dynamo.llm.postprocess import OutputParsers

MOCKER = {"speedup_ratio": 0, "block_size": 4, "num_gpu_blocks": 4096, "seed": 1}
HI = [{"role": "user", "content": "Hello there, how are you today?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def card(smollm2_gguf):
    return load_card(str(smollm2_gguf), model_name="smol")


@pytest.fixture
async def client(card, monkeypatch):
    """An openai client on an app serving `mock` (mocker), `echo` (echo_core), `echo-tools`
    (echo_core with the hermes and qwen3 parsers) and `echo-full` (a text-level engine)."""
    monkeypatch.setenv("DYN_TOKEN_ECHO_DELAY_MS", "0")
    from dynamo.engines.echo._engines import token_delay_seconds

    token_delay_seconds.cache_clear()
    mocker = await MockerEngine.start(EngineConfig(model_name="mock", extra_engine_args=MOCKER))
    echo = EchoCoreEngine()
    state = AppState()
    state.models.add(BackendModel("mock", card, mocker, MockerEngine.features))
    state.models.add(BackendModel("echo", card, echo, EchoCoreEngine.features, OutputParsers()))
    state.models.add(
        BackendModel(
            "echo-tools",
            card,
            echo,
            EchoCoreEngine.features,
            OutputParsers(tool_call_parser="hermes", reasoning_parser="qwen3"),
        )
    )
    text_engine = OpenAIEngineModel(
        "echo-full",
        None,
        OverTheWire(EchoFullEngine()),
        frozenset({ModelType.Chat, ModelType.Completion}),
        EchoFullEngine.features,
    )
    state.models.add(text_engine)
    app = build_app(state)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    yield openai.AsyncOpenAI(base_url="http://t/v1", api_key="x", http_client=http, max_retries=0)
    await http.aclose()
    await mocker.close()
    token_delay_seconds.cache_clear()


class OverTheWire:
    """An engine behind the request plane's codec, as a remote worker sees its requests."""

    def __init__(self, engine):
        self.engine = engine

    def generate(self, request, context):
        from dynamo.runtime.codec import decode_request, encode_request

        _, body = decode_request(encode_request(context.id(), request))
        return self.engine.generate(body, context)


def raw_echo(text: str, **kw):
    """A chat request whose echo_core answer is exactly `text`."""
    extra = {"nvext": {"use_raw_prompt": True, "ignore_eos": True}, **kw.pop("extra_body", {})}
    return {"messages": [{"role": "user", "content": text}], "extra_body": extra, **kw}


async def refused(call, param: str) -> str:
    with pytest.raises(openai.BadRequestError) as e:
        await call
    assert e.value.status_code == 400
    body = e.value.body
    assert body["param"] == param, body
    return body["message"]


# -- item 1: nothing silently ignored ------------------------------------------------------------


async def test_unknown_field_is_a_400_naming_it(client):
    message = await refused(
        client.chat.completions.create(model="mock", messages=HI, extra_body={"frobnicate": True}),
        "frobnicate",
    )
    assert "frobnicate" in message and "unrecognized request field" in message
    await refused(
        client.completions.create(model="mock", prompt="x", extra_body={"nvext": {"zzz": 1}}),
        "nvext.zzz",
    )


async def test_descriptive_fields_are_accepted(client):
    resp = await client.chat.completions.create(
        model="mock",
        messages=HI,
        max_tokens=3,
        user="u-1",
        metadata={"team": "a"},
        store=False,
        service_tier="auto",
        extra_body={"prompt_cache_key": "k", "safety_identifier": "s"},
    )
    assert resp.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"store": True}, "store"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"extra_body": {"web_search_options": {}}}, "web_search_options"),
        ({"extra_body": {"spaces_between_special_tokens": False}}, "spaces_between_special_tokens"),
    ],
)
async def test_fields_no_engine_honours_are_refused(client, kw, param):
    await refused(client.chat.completions.create(model="mock", messages=HI, **kw), param)


async def test_completions_suffix_is_refused(client):
    await refused(client.completions.create(model="mock", prompt="x", suffix="y"), "suffix")


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
                }
            },
            "response_format",
        ),
        ({"extra_body": {"guided_regex": "[0-9]+"}}, "guided_regex"),
        ({"extra_body": {"nvext": {"guided_choice": ["a", "b"]}}}, "nvext.guided_choice"),
        ({"extra_body": {"nvext": {"max_thinking_tokens": 5}}}, "nvext.max_thinking_tokens"),
    ],
)
async def test_features_the_engine_lacks_are_refused_for_that_model(client, kw, param):
    message = await refused(client.chat.completions.create(model="echo", messages=HI, **kw), param)
    assert "'echo'" in message


async def test_two_structured_output_requests_are_refused(client):
    await refused(
        client.chat.completions.create(
            model="mock",
            messages=HI,
            response_format={"type": "json_object"},
            extra_body={"guided_regex": "a"},
        ),
        "guided_regex",
    )


async def test_sampling_knobs_are_accepted_by_an_unsampled_engine(client):
    resp = await client.chat.completions.create(
        model="echo",
        max_tokens=2,
        temperature=0.3,
        top_p=0.9,
        seed=4,
        logit_bias={"5": 1.0},
        frequency_penalty=0.1,
        extra_body={"top_k": 5, "min_p": 0.1, "repetition_penalty": 1.1},
        **{k: v for k, v in raw_echo("abc").items() if k != "extra_body"},
    )
    assert resp.usage.completion_tokens == 2


# -- logprobs ------------------------------------------------------------------------------------


def check_chat_logprobs(entries, top: int) -> None:
    assert entries
    for e in entries:
        assert isinstance(e.token, str) and e.logprob <= 0
        assert bytes(e.bytes).decode("utf-8", errors="replace") == e.token
        assert len(e.top_logprobs) == top
        assert [t.logprob for t in e.top_logprobs] == sorted(
            (t.logprob for t in e.top_logprobs), reverse=True
        )


async def test_chat_logprobs_unary_and_stream(client):
    resp = await client.chat.completions.create(
        model="mock", messages=HI, max_tokens=5, logprobs=True, top_logprobs=2
    )
    entries = resp.choices[0].logprobs.content
    assert len(entries) == resp.usage.completion_tokens == 5
    check_chat_logprobs(entries, 2)
    assert "".join(e.token for e in entries) == resp.choices[0].message.content
    stream = await client.chat.completions.create(
        model="mock", messages=HI, max_tokens=5, logprobs=True, stream=True
    )
    streamed = [e async for ch in stream for e in (ch.choices[0].logprobs.content or [])]
    assert len(streamed) == 5
    check_chat_logprobs(streamed, 0)


async def test_completion_logprobs_unary_and_stream(client):
    resp = await client.completions.create(
        model="mock", prompt="Hello there", max_tokens=4, logprobs=3
    )
    lp = resp.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 4
    assert all(len(t) <= 3 for t in lp.top_logprobs)
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(4)]
    stream = await client.completions.create(
        model="mock", prompt="Hello there", max_tokens=4, logprobs=1, stream=True
    )
    tokens = [
        t async for ch in stream if ch.choices[0].logprobs for t in ch.choices[0].logprobs.tokens
    ]
    assert len(tokens) == 4


# -- n, best_of, lists of prompts ----------------------------------------------------------------


async def test_chat_n_choices_unary_and_stream(client):
    resp = await client.chat.completions.create(model="mock", messages=HI, max_tokens=3, n=3)
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert all(c.finish_reason == "length" for c in resp.choices)
    one = await client.chat.completions.create(model="mock", messages=HI, max_tokens=3)
    assert resp.usage.completion_tokens == 9
    assert resp.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt counts once
    stream = await client.chat.completions.create(
        model="mock",
        messages=HI,
        max_tokens=3,
        n=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [ch async for ch in stream]
    finished = {c.index for ch in chunks for c in ch.choices if c.finish_reason}
    assert finished == {0, 1}
    roles = [c.index for ch in chunks for c in ch.choices if c.delta.role == "assistant"]
    assert sorted(roles) == [0, 1]
    assert chunks[-1].usage.completion_tokens == 6


async def test_completions_list_of_prompts_and_n(client):
    resp = await client.completions.create(
        model="echo",
        prompt=["alpha beta", "gamma"],
        n=2,
        max_tokens=50,
        extra_body={"ignore_eos": True},
    )
    assert [c.index for c in resp.choices] == [0, 1, 2, 3]
    texts = [c.text for c in resp.choices]
    assert texts[0] == texts[1] and texts[2] == texts[3] and texts[0] != texts[2]
    assert "alpha" in texts[0] and "gamma" in texts[2]


async def test_completions_best_of_returns_n(client):
    resp = await client.completions.create(
        model="mock", prompt="Hello there", max_tokens=3, n=1, best_of=3
    )
    assert len(resp.choices) == 1 and resp.choices[0].logprobs is None
    assert resp.usage.completion_tokens == 9  # every candidate was generated
    await refused(client.completions.create(model="echo", prompt="x", n=1, best_of=2), "best_of")


async def test_completions_default_max_tokens_is_16(client):
    resp = await client.completions.create(
        model="echo", prompt="one two three " * 20, extra_body={"ignore_eos": True}
    )
    assert resp.usage.completion_tokens == 16 and resp.choices[0].finish_reason == "length"


async def test_completions_echo(client):
    resp = await client.completions.create(
        model="echo", prompt="Hi you", max_tokens=2, echo=True, extra_body={"ignore_eos": True}
    )
    assert resp.choices[0].text.startswith("Hi you")


# -- tool calls and reasoning --------------------------------------------------------------------

CALL_TEXT = (
    'Checking.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n</tool_call>'
)


async def test_tool_calls_unary(client):
    resp = await client.chat.completions.create(
        model="echo-tools", tools=[WEATHER_TOOL], **raw_echo(CALL_TEXT)
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Zürich"}


async def test_tool_calls_stream_incremental_shape(client):
    stream = await client.chat.completions.create(
        model="echo-tools", tools=[WEATHER_TOOL], stream=True, **raw_echo(CALL_TEXT)
    )
    content, calls, finish = "", [], None
    async for ch in stream:
        delta = ch.choices[0].delta
        content += delta.content or ""
        calls += delta.tool_calls or []
        finish = ch.choices[0].finish_reason or finish
    assert content == "Checking." and "<tool" not in content
    assert finish == "tool_calls"
    assert calls[0].id and calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == ""
    arguments = "".join(c.function.arguments or "" for c in calls)
    assert json.loads(arguments) == {"city": "Zürich"}


async def test_tool_choice_none_leaves_the_text_alone(client):
    resp = await client.chat.completions.create(
        model="echo-tools", tools=[WEATHER_TOOL], tool_choice="none", **raw_echo(CALL_TEXT)
    )
    assert resp.choices[0].message.tool_calls is None
    assert "<tool_call>" in resp.choices[0].message.content


async def test_parallel_tool_calls_false_keeps_the_first(client):
    two = (
        CALL_TEXT + '<tool_call>{"name": "get_weather", "arguments": {"city": "Bern"}}</tool_call>'
    )
    resp = await client.chat.completions.create(
        model="echo-tools", tools=[WEATHER_TOOL], parallel_tool_calls=False, **raw_echo(two)
    )
    assert len(resp.choices[0].message.tool_calls) == 1
    resp = await client.chat.completions.create(
        model="echo-tools", tools=[WEATHER_TOOL], **raw_echo(two)
    )
    assert len(resp.choices[0].message.tool_calls) == 2


async def test_tools_without_a_parser_are_refused(client):
    await refused(
        client.chat.completions.create(model="echo", tools=[WEATHER_TOOL], **raw_echo("x")),
        "tools",
    )


async def test_forced_tool_choice_needs_guided_decoding(client):
    await refused(
        client.chat.completions.create(
            model="echo-tools", tools=[WEATHER_TOOL], tool_choice="required", **raw_echo("x")
        ),
        "tool_choice",
    )


THINK_TEXT = "<think>The user wants weather.</think>\n\n" + CALL_TEXT


async def test_reasoning_with_tool_calls_unary_and_stream(client):
    resp = await client.chat.completions.create(
        model="echo-tools", tools=[WEATHER_TOOL], **raw_echo(THINK_TEXT)
    )
    message = resp.choices[0].message
    assert message.reasoning_content == "The user wants weather."
    assert message.content == "Checking."
    assert message.tool_calls[0].function.name == "get_weather"
    assert resp.usage.completion_tokens_details.reasoning_tokens > 0
    stream = await client.chat.completions.create(
        model="echo-tools",
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
        **raw_echo(THINK_TEXT),
    )
    reasoning = content = ""
    usage = None
    async for ch in stream:
        usage = ch.usage or usage
        if ch.choices:
            delta = ch.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
    assert (reasoning, content) == ("The user wants weather.", "Checking.")
    assert usage.completion_tokens_details.reasoning_tokens > 0


# -- small parity items --------------------------------------------------------------------------


async def test_request_id_and_system_fingerprint(client):
    raw = await client.chat.completions.with_raw_response.create(
        model="mock", messages=HI, max_tokens=1, extra_headers={"x-request-id": "req-42"}
    )
    assert raw.headers["x-request-id"] == "req-42"
    resp = raw.parse()
    assert resp.id == "chatcmpl-req-42"
    assert resp.system_fingerprint and resp.system_fingerprint.startswith("fp_")


async def test_stop_token_ids(client, card):
    tok = card.tokenizer()
    ids = tok.encode("one two three four", add_special_tokens=False).ids
    resp = await client.completions.create(
        model="echo",
        prompt="one two three four",
        max_tokens=10,
        extra_body={"stop_token_ids": [ids[2]], "ignore_eos": True},
    )
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].text == tok.decode(ids[:3])


# -- text-level engines: what the frontend cannot do for them is refused -------------------------


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"tools": [WEATHER_TOOL]}, "tools"),
        ({"extra_body": {"stop_token_ids": [1]}}, "stop_token_ids"),
        ({"extra_body": {"min_tokens": 2}}, "min_tokens"),
        ({"extra_body": {"chat_template_kwargs": {"x": 1}}}, "chat_template_kwargs"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
    ],
)
async def test_text_engine_refuses_what_only_detokenizing_can_do(client, kw, param):
    await refused(client.chat.completions.create(model="echo-full", messages=HI, **kw), param)


async def test_text_engine_body_is_json_safe(client):
    # What a text-level engine gets crosses the network: token-id keys must be strings.
    resp = await client.chat.completions.create(
        model="echo-full", messages=[{"role": "user", "content": "ab"}], logit_bias={"5": 1.0}
    )
    assert resp.choices[0].message.content == "ab"


async def test_text_engine_greed_sampling_reaches_the_body(client):
    seen = []
    model = client._client._transport.app.state.dynamo.models.get("echo-full")
    original = model.engine.generate

    def spy(body, context):
        seen.append(body)
        return original(body, context)

    model.engine.generate = spy
    await client.chat.completions.create(
        model="echo-full",
        messages=[{"role": "user", "content": "a"}],
        temperature=0.9,
        extra_body={"nvext": {"greed_sampling": True}},
    )
    assert seen[0]["temperature"] == 0.0


async def test_text_engine_n_choices(client):
    resp = await client.chat.completions.create(
        model="echo-full", messages=[{"role": "user", "content": "abc"}], n=2
    )
    assert [c.message.content for c in resp.choices] == ["abc", "abc"]
    assert [c.index for c in resp.choices] == [0, 1]


async def test_cached_tokens_reported_by_the_engine(client):
    long = [{"role": "user", "content": "A long shared system prompt for caching. " * 20}]
    first = await client.chat.completions.create(model="mock", messages=long, max_tokens=2)
    again = await client.chat.completions.create(model="mock", messages=long, max_tokens=2)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert 0 < again.usage.prompt_tokens_details.cached_tokens < again.usage.prompt_tokens


async def test_skip_special_tokens(client):
    text = "<|im_start|>user hi<|im_end|>"
    kept = await client.chat.completions.create(model="echo", **raw_echo(text))
    assert kept.choices[0].message.content == text
    skipped = await client.chat.completions.create(
        model="echo", **raw_echo(text, extra_body={"skip_special_tokens": True})
    )
    assert "<|im_start|>" not in skipped.choices[0].message.content
    assert "hi" in skipped.choices[0].message.content


async def test_continuous_usage_stats(client):
    stream = await client.chat.completions.create(
        model="mock",
        messages=HI,
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"stream_options": {"include_usage": True, "continuous_usage_stats": True}},
    )
    chunks = [ch async for ch in stream]
    counts = [ch.usage.completion_tokens for ch in chunks]
    assert counts == sorted(counts) and counts[-1] == 3
    assert all(ch.usage is not None for ch in chunks)


async def test_annotations_are_named_sse_events(client, card):
    body = {
        "model": "echo",
        "stream": True,
        "max_tokens": 2,
        "messages": HI,
        "nvext": {"annotations": ["formatted_prompt", "token_ids"]},
    }
    http = client._client
    async with http.stream("POST", "http://t/v1/chat/completions", json=body) as r:
        text = (await r.aread()).decode()
    events = text.split("\n\n")
    assert events[0].startswith("event: formatted_prompt\n: ")
    assert "<|im_start|>user" in json.loads(events[0].split("\n: ", 1)[1])
    ids = json.loads(events[1].removeprefix("event: token_ids\n: "))
    assert ids == card.tokenizer().encode(json.loads(events[0].split("\n: ", 1)[1])).ids
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[2:] if e.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)


@pytest.mark.parametrize(
    ("nvext", "stream"), [({"annotations": ["token_ids"]}, False), ({"annotations": ["x"]}, True)]
)
async def test_annotations_refused_unary_or_unknown(client, nvext, stream):
    await refused(
        client.chat.completions.create(
            model="echo", messages=HI, stream=stream, extra_body={"nvext": nvext}
        ),
        "nvext.annotations",
    )
