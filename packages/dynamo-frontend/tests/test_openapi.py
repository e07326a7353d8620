"""`/openapi.json` describes the real request and response schemas, and every `$ref` resolves."""

from __future__ import annotations

import httpx

from dynamo.frontend.http.app import AppState, build_app


def resolve(document: dict, ref: str) -> dict:
    node = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def refs(node) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


async def test_openapi_has_typed_bodies_and_responses():
    app = build_app(AppState())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        document = (await c.get("/openapi.json")).json()
    chat = document["paths"]["/v1/chat/completions"]["post"]
    body = resolve(document, chat["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert {"messages", "tools", "tool_choice", "logprobs", "response_format", "nvext"} <= set(
        body["properties"]
    )
    assert body.get("additionalProperties") is False
    ok = chat["responses"]["200"]["content"]
    answer = resolve(document, ok["application/json"]["schema"]["$ref"])
    assert {"choices", "usage", "system_fingerprint"} <= set(answer["properties"])
    assert "text/event-stream" in ok
    assert "400" in chat["responses"]
    completions = document["paths"]["/v1/completions"]["post"]
    body = resolve(
        document, completions["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    )
    assert {"prompt", "echo", "best_of", "logprobs"} <= set(body["properties"])
    for ref in refs(document):
        assert resolve(document, ref), ref
