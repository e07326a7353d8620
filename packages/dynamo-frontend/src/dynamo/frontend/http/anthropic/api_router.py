"""The Anthropic Messages routes (`--enable-anthropic-api`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as AppRoute

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


def routes(serving: AnthropicServing) -> list[AppRoute]:
    async def create_message(request: Request) -> Response:
        return await serving.create(request)

    async def count_tokens(request: Request) -> Response:
        return await serving.count_tokens(request)

    return [
        AppRoute("/v1/messages", create_message, methods=["POST"]),
        AppRoute("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
    ]
