"""`/openapi.json`, `/docs` and `/redoc`, describing the real request and response schemas.

The routes read their bodies themselves (a request template applies first, and every error goes
through one mapper), so no framework could infer the schemas from their signatures. This module
writes the document from the app's routes (paths, methods, path parameters) and, for each
operation, its request body, its JSON answer, its server-sent event chunks and its error shape,
all from the pydantic models the frontend validates with (`dynamo.llm.protocols`). The document
is built on its first request, not at start-up: its JSON schemas cost more than the rest of the
app's construction.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute
from starlette.routing import Route as AppRoute

from dynamo.frontend.http.serving import JSONResponse
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


def paths(app_routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """Every route of the app as an OpenAPI path item: its methods (HEAD, which Starlette adds to
    each GET, left out), its path parameters, and a bare 200 that `describe` replaces for the
    routes it knows the schemas of (the probes' and `/metrics`' bodies stay unspecified)."""
    items: dict[str, Any] = {}
    for route in app_routes:
        if not isinstance(route, AppRoute) or not route.include_in_schema or not route.methods:
            continue
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in route.param_convertors
        ]
        for method in sorted(route.methods - {"HEAD"}):
            operation: dict[str, Any] = {
                "summary": route.name.replace("_", " ").capitalize(),
                "operationId": route.name,
                "responses": {"200": {"description": "OK"}},
            }
            if parameters:
                operation["parameters"] = parameters
            items.setdefault(route.path_format, {})[method.lower()] = operation
    return items


def document(
    app_routes: Sequence[BaseRoute],
    routes: dict[str, Route],
    title: str,
    description: str,
    version: str,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app_routes`, with the schemas `routes` give."""
    info = {"title": title, "description": description, "version": version}
    return describe({"openapi": "3.1.0", "info": info, "paths": paths(app_routes)}, routes)


_SWAGGER_UI = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "/openapi.json", dom_id: "#swagger-ui"}})</script>
</body></html>
"""

_REDOC = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title></head><body>
<redoc spec-url="/openapi.json"></redoc>
<script src="https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"></script>
</body></html>
"""


def install(
    app: Starlette,
    routes: dict[str, Route],
    title: str,
    description: str,
    version: Callable[[], str],
) -> None:
    """Serve the document at `/openapi.json` (built on its first request, from the routes the
    app has by then) and the pages that read it, Swagger UI at `/docs` and ReDoc at `/redoc`;
    none of the three is in the document itself."""
    built: list[dict[str, Any]] = []

    async def openapi_json(request: Request) -> Response:
        if not built:
            built.append(document(app.routes, routes, title, description, version()))
        return JSONResponse(built[0])

    def page(template: str) -> Callable[[Request], Any]:
        body = template.format(title=html.escape(title))

        async def endpoint(request: Request) -> Response:
            return HTMLResponse(body)

        return endpoint

    for path, endpoint in (
        ("/openapi.json", openapi_json),
        ("/docs", page(_SWAGGER_UI)),
        ("/redoc", page(_REDOC)),
    ):
        app.router.routes.append(AppRoute(path, endpoint, methods=["GET"], include_in_schema=False))
