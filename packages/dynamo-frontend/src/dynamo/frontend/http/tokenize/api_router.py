"""The `/tokenize` and `/detokenize` routes."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from dynamo.frontend.http.openapi import Route
from dynamo.frontend.http.responses.api_router import JSON_BODY
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


def attach_router(app: FastAPI, serving: TokenizeServing) -> None:
    router = APIRouter(tags=["tokenize"])

    @router.post("/tokenize", openapi_extra=JSON_BODY)
    async def tokenize(request: Request) -> Response:
        return await serving.tokenize(request)

    @router.post("/detokenize", openapi_extra=JSON_BODY)
    async def detokenize(request: Request) -> Response:
        return await serving.detokenize(request)

    app.include_router(router)
