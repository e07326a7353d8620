"""`/v1/responses` in process (the real app over `httpx.ASGITransport`) with the real `openai`
SDK: create, stream, previous_response_id, retrieve/delete, errors."""

from __future__ import annotations

import json

import openai
import pytest

from dynamo.frontend.request_template import RequestTemplate


@pytest.fixture
def served(translated):
    state, reporter = translated.app_state()
    http = translated.http_client(state)
    client = openai.AsyncOpenAI(
        base_url="http://test/v1", api_key="none", http_client=http, max_retries=0
    )
    return client, reporter, state


async def test_create(served):
    client, _, _ = served
    response = await client.responses.create(model="echo", input="hello")
    assert response.output_text == "hello"
    assert response.status == "completed" and response.model == "echo"
    assert response.id.startswith("resp_") and response.output[0].type == "message"
    assert response.usage.output_tokens == 5


async def test_stream_helper_and_raw_events(served):
    client, _, _ = served
    async with client.responses.stream(model="echo", input="héllo") as stream:
        deltas = [
            event.delta async for event in stream if event.type == "response.output_text.delta"
        ]
        final = await stream.get_final_response()
    assert "".join(deltas) == "héllo" == final.output_text
    events = [e async for e in await client.responses.create(model="echo", input="hi", stream=True)]
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))


async def test_instructions_and_previous_response_id(served):
    client, reporter, _ = served
    first = await client.responses.create(model="report", input="one", instructions="be terse")
    assert json.loads(first.output_text) == [
        {"role": "system", "content": "be terse"},
        {"role": "user", "content": "one"},
    ]
    second = await client.responses.create(
        model="report",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "two"}]}],
        previous_response_id=first.id,
    )
    assert second.previous_response_id == first.id
    # The earlier turn and its answer come first; the earlier instructions do not carry over.
    assert reporter.requests[-1]["messages"] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "two"},
    ]


async def test_store_retrieve_delete(served):
    client, _, _ = served
    kept = await client.responses.create(model="echo", input="keep me")
    assert (await client.responses.retrieve(kept.id)).output_text == "keep me"
    items = await client.responses.input_items.list(kept.id)
    assert [(i.type, i.role, i.content[0].text) for i in items.data] == [
        ("message", "user", "keep me")
    ]
    convo = await client.responses.create(
        model="echo",
        input=[
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ],
    )
    newest_first = [
        i.content[0].text for i in (await client.responses.input_items.list(convo.id)).data
    ]
    assert newest_first == ["c", "b", "a"]
    page = await client.responses.input_items.list(convo.id, order="asc", limit=2)
    assert [i.content[0].text for i in page.data] == ["a", "b"] and page.has_more
    rest = await client.responses.input_items.list(convo.id, order="asc", after=page.data[-1].id)
    assert [i.content[0].text for i in rest.data] == ["c"] and not rest.has_more
    with pytest.raises(openai.BadRequestError):
        await client.responses.input_items.list(convo.id, include=["file_search_call.results"])
    await client.responses.delete(kept.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(kept.id)
    unstored = await client.responses.create(model="echo", input="x", store=False)
    with pytest.raises(openai.NotFoundError) as e:
        await client.responses.create(model="echo", input="y", previous_response_id=unstored.id)
    assert e.value.body["param"] == "previous_response_id"


async def test_max_output_tokens_is_incomplete(served):
    client, _, _ = served
    response = await client.responses.create(model="echo", input="hello", max_output_tokens=2)
    assert response.output_text == "he"
    assert (
        response.status == "incomplete"
        and response.incomplete_details.reason == "max_output_tokens"
    )


async def test_errors_are_openai_shaped(served):
    client, _, _ = served
    with pytest.raises(openai.NotFoundError) as e:
        await client.responses.create(model="nope", input="x")
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        await client.responses.create(model="echo", input="x", background=True)
    assert "background" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        await client.responses.create(model="echo", input="x", tools=[{"type": "web_search"}])
    assert e.value.body["param"] == "tools[0].type"


async def test_error_mid_stream(served):
    client, _, _ = served
    events = [
        e async for e in await client.responses.create(model="failing", input="x", stream=True)
    ]
    kinds = [e.type for e in events]
    assert "response.output_text.delta" in kinds
    assert kinds[-2:] == ["error", "response.failed"]
    assert events[-1].response.status == "failed"
    assert events[-1].response.error.message == "the engine broke down"


async def test_request_template_defaults(translated):
    state, _ = translated.app_state(
        request_template=RequestTemplate(model="echo", max_completion_tokens=3)
    )
    async with translated.http_client(state) as http:
        r = await http.post("/v1/responses", json={"input": "hello"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "echo" and body["max_output_tokens"] == 3
    assert body["output"][0]["content"][0]["text"] == "hel"
