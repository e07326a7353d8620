"""`/openapi.json` describes every route with its real request and response schemas (chat and
completions, Responses, Anthropic with Anthropic's error shape, embeddings, tokenize, models,
version), and every `$ref` resolves."""

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


async def openapi_document(anthropic_api: bool = False) -> dict:
    app = build_app(AppState(anthropic_api=anthropic_api))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        return (await c.get("/openapi.json")).json()


def schema(doc: dict, content: dict) -> dict:
    return resolve(doc, content["application/json"]["schema"]["$ref"])


async def test_openapi_has_typed_bodies_and_responses():
    document = await openapi_document()
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


async def test_endpoint_schemas():
    doc = await openapi_document(anthropic_api=True)
    paths = doc["paths"]
    expected_bodies = {
        "/v1/responses": {
            "input",
            "instructions",
            "tools",
            "text",
            "previous_response_id",
            "store",
        },
        "/v1/messages": {"messages", "system", "max_tokens", "stop_sequences", "tools", "thinking"},
        "/v1/embeddings": {"input", "encoding_format", "dimensions"},
        "/detokenize": {"tokens"},
    }
    for path, fields in expected_bodies.items():
        body = schema(doc, paths[path]["post"]["requestBody"]["content"])
        assert fields <= set(body["properties"]), path
    answers = {
        ("/v1/responses", "post"): {"output", "status", "usage"},
        ("/v1/messages", "post"): {"content", "stop_reason", "usage"},
        ("/v1/embeddings", "post"): {"data", "usage"},
        ("/tokenize", "post"): {"tokens", "count", "max_model_len"},
        ("/v1/models/{model_id}", "get"): {"id", "root", "max_model_len"},
        ("/version", "get"): {"version"},
    }
    for (path, method), fields in answers.items():
        ok = paths[path][method]["responses"]["200"]["content"]
        assert fields <= set(schema(doc, ok)["properties"]), path
    assert "text/event-stream" in paths["/v1/responses"]["post"]["responses"]["200"]["content"]
    error = schema(doc, paths["/v1/messages"]["post"]["responses"]["400"]["content"])
    assert set(error["properties"]) == {"type", "error"}
    for ref in refs(doc):
        assert resolve(doc, ref), ref


async def test_anthropic_routes_only_with_the_flag():
    assert "/v1/messages" not in (await openapi_document(anthropic_api=False))["paths"]


async def test_routes_that_look_up_an_id_declare_their_404():
    """GET/DELETE of a response, its input items and a model answer 404 for an unknown id: the
    schema says so (with the error shape), so schemathesis checks that answer as documented."""
    doc = await openapi_document(anthropic_api=True)
    with_ids = {
        (path, method): operation
        for path, item in doc["paths"].items()
        if "{" in path
        for method, operation in item.items()
    }
    assert set(with_ids) == {
        ("/v1/models/{model_id}", "get"),
        ("/v1/responses/{response_id}", "get"),
        ("/v1/responses/{response_id}", "delete"),
        ("/v1/responses/{response_id}/input_items", "get"),
    }
    for (path, method), operation in with_ids.items():
        responses = operation["responses"]
        assert "404" in responses, (path, method)
        assert set(schema(doc, responses["404"]["content"])["properties"]) == {"error"}
        assert "422" not in responses, (path, method)  # FastAPI's default; never answered here
    deleted = doc["paths"]["/v1/responses/{response_id}"]["delete"]["responses"]["200"]
    assert {"id", "object", "deleted"} <= set(schema(doc, deleted["content"])["properties"])


async def test_the_declared_404s_are_what_the_server_answers():
    app = build_app(AppState())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for method, path in (
            ("GET", "/v1/models/nope"),
            ("GET", "/v1/responses/resp_nope"),
            ("DELETE", "/v1/responses/resp_nope"),
            ("GET", "/v1/responses/resp_nope/input_items"),
        ):
            answer = await c.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["error"]["message"], (method, path)


async def test_every_route_is_a_path_with_its_methods_and_parameters():
    """The document's skeleton comes from the app's own routes: the probes and `/metrics` are
    there (with no body schema claimed), HEAD (which Starlette adds to each GET) and the
    document's own pages are not, and a path's parameters are declared."""
    doc = await openapi_document()
    paths = doc["paths"]
    assert doc["openapi"].startswith("3.1") and doc["info"]["title"] == "Dynamo-Py"
    for probe in ("/health", "/live", "/metrics"):
        assert set(paths[probe]) == {"get"}, probe
        assert "content" not in paths[probe]["get"]["responses"]["200"], probe
    assert not {"/openapi.json", "/docs", "/redoc"} & set(paths)
    assert set(paths["/v1/responses/{response_id}"]) == {"get", "delete"}
    assert paths["/v1/models/{model_id}"]["get"]["parameters"] == [
        {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    assert "parameters" not in paths["/v1/models"]["get"]
    operation_ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


async def test_docs_pages_load_the_document():
    app = build_app(AppState())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for page in ("/docs", "/redoc"):
            answer = await c.get(page)
            assert answer.status_code == 200, page
            assert answer.headers["content-type"].startswith("text/html"), page
            assert '"/openapi.json"' in answer.text, page
