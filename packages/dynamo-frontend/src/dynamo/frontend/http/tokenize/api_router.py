"""The `/tokenize` and `/detokenize` routes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as AppRoute

from dynamo.frontend.http.openapi import Route
from dynamo.frontend.http.tokenize.protocol import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
)
from dynamo.frontend.http.tokenize.serving import TokenizeServing

#: The schemas `/openapi.json` shows for these routes.
OPENAPI_ROUTES = {
    "/tokenize": Route(method="post", request=TokenizeRequest, response=TokenizeResponse),
    "/detokenize": Route(method="post", request=DetokenizeRequest, response=DetokenizeResponse),
}


def routes(serving: TokenizeServing) -> list[AppRoute]:
    async def tokenize(request: Request) -> Response:
        return await serving.tokenize(request)

    async def detokenize(request: Request) -> Response:
        return await serving.detokenize(request)

    return [
        AppRoute("/tokenize", tokenize, methods=["POST"]),
        AppRoute("/detokenize", detokenize, methods=["POST"]),
    ]
