"""The Anthropic Messages routes (`--enable-anthropic-api`)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from dynamo.frontend.http.anthropic.serving import AnthropicServing
from dynamo.frontend.http.responses.api_router import JSON_BODY


def attach_router(app: FastAPI, serving: AnthropicServing) -> None:
    router = APIRouter(tags=["anthropic"])

    @router.post("/v1/messages", openapi_extra=JSON_BODY)
    async def create_message(request: Request) -> Response:
        return await serving.create(request)

    @router.post("/v1/messages/count_tokens", openapi_extra=JSON_BODY)
    async def count_tokens(request: Request) -> Response:
        return await serving.count_tokens(request)

    app.include_router(router)
