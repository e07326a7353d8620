"""The Anthropic Messages routes (`--enable-anthropic-api`)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from dynamo.frontend.http.anthropic.protocol import (
    AnthropicError,
    CountTokensRequest,
    MessageObject,
    MessagesRequest,
    MessageStreamEvent,
    TokenCount,
)
from dynamo.frontend.http.anthropic.serving import AnthropicServing
from dynamo.frontend.http.openapi import Route
from dynamo.frontend.http.responses.api_router import JSON_BODY

#: The schemas `/openapi.json` shows for these routes (only with --enable-anthropic-api).
OPENAPI_ROUTES = {
    "/v1/messages": Route(
        method="post",
        request=MessagesRequest,
        response=MessageObject,
        chunk=MessageStreamEvent,
        chunk_description="with stream: true, Anthropic's events (`message_start`, "
        "`content_block_start`/`_delta`/`_stop`, `message_delta`, `message_stop`)",
        error=AnthropicError,
    ),
    "/v1/messages/count_tokens": Route(
        method="post", request=CountTokensRequest, response=TokenCount, error=AnthropicError
    ),
}


def attach_router(app: FastAPI, serving: AnthropicServing) -> None:
    router = APIRouter(tags=["anthropic"])

    @router.post("/v1/messages", openapi_extra=JSON_BODY)
    async def create_message(request: Request) -> Response:
        return await serving.create(request)

    @router.post("/v1/messages/count_tokens", openapi_extra=JSON_BODY)
    async def count_tokens(request: Request) -> Response:
        return await serving.count_tokens(request)

    app.include_router(router)
