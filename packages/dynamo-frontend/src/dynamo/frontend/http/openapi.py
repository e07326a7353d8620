"""`/openapi.json` and `/docs` that describe the real request and response schemas.

The routes read their bodies themselves (a request template applies first, and every error goes
through one mapper), so FastAPI cannot infer the schemas from their signatures. This module
writes them into the generated document: each OpenAI route's request body, its JSON answer, its
server-sent event chunks, and the error shape, all from the pydantic models the frontend
validates with (`dynamo.llm.protocols`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from dynamo.llm.protocols.openai import ChatCompletionRequest, CompletionRequest, ModelList
from dynamo.llm.protocols.responses import (
    ChatCompletionChunk,
    ChatCompletionResponse,
    CompletionResponse,
    ErrorResponse,
)

_REF = "#/components/schemas/{model}"


class Route(BaseModel):
    """What one route takes and gives."""

    method: str
    request: type[BaseModel] | None = None
    response: type[BaseModel]
    chunk: type[BaseModel] | None = None
    #: How its stream is framed, when it has one.
    chunk_description: str = (
        "with stream: true, one `data: {chunk}` event per piece, then `data: [DONE]`"
    )
    #: Its error body (the Anthropic routes answer in Anthropic's shape).
    error: type[BaseModel] = ErrorResponse
    #: Error statuses it answers beyond a body route's usual ones, with what each means: a route
    #: that looks something up by id declares its 404, so a schema-driven client or fuzzer
    #: (schemathesis's status checks) knows that answer is documented, not a fault.
    errors: dict[str, str] = {}
    #: Its path, where the key naming it is not (a second method of a path listed already).
    path: str | None = None


ROUTES: dict[str, Route] = {
    "/v1/chat/completions": Route(
        method="post",
        request=ChatCompletionRequest,
        response=ChatCompletionResponse,
        chunk=ChatCompletionChunk,
    ),
    "/v1/completions": Route(
        method="post",
        request=CompletionRequest,
        response=CompletionResponse,
        chunk=CompletionResponse,
    ),
    "/v1/models": Route(method="get", response=ModelList),
}


def describe(document: dict[str, Any], routes: dict[str, Route] = ROUTES) -> dict[str, Any]:
    """Write the routes' schemas into an OpenAPI document (in place; returned for chaining)."""
    wanted: list[tuple[type[BaseModel], str]] = [(ErrorResponse, "serialization")]
    for route in routes.values():
        wanted.append((route.error, "serialization"))
        if route.request is not None:
            wanted.append((route.request, "validation"))
        wanted.append((route.response, "serialization"))
        if route.chunk is not None:
            wanted.append((route.chunk, "serialization"))
    wanted = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(wanted, ref_template=_REF)  # type: ignore[arg-type]
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(top.get("$defs", {}))
    for key, route in routes.items():
        error = {"application/json": {"schema": refs[(route.error, "serialization")]}}
        operation = document.get("paths", {}).get(route.path or key, {}).get(route.method)
        if operation is None:
            continue
        if route.request is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(route.request, "validation")]}},
            }
        ok: dict[str, Any] = {
            "application/json": {"schema": refs[(route.response, "serialization")]}
        }
        if route.chunk is not None:
            ok["text/event-stream"] = {
                "schema": refs[(route.chunk, "serialization")],
                "description": route.chunk_description,
            }
        operation["responses"] = {"200": {"description": "OK", "content": ok}}
        if route.request is not None:
            for status, why in (
                ("400", "invalid request, or a field this model cannot honour"),
                ("404", "no such model"),
                ("499", "the client went away"),
                ("503", "no worker can take the request"),
            ):
                operation["responses"][status] = {"description": why, "content": error}
        for status, why in route.errors.items():
            operation["responses"][status] = {"description": why, "content": error}
    return document


def install(app: FastAPI, routes: dict[str, Route] = ROUTES) -> None:
    """Make `app.openapi()` (and so `/openapi.json` and `/docs`) describe the real schemas."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = describe(document, routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
