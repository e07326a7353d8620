"""The `/tokenize` and `/detokenize` routes."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from dynamo.frontend.http.responses.api_router import JSON_BODY
from dynamo.frontend.http.tokenize.serving import TokenizeServing


def attach_router(app: FastAPI, serving: TokenizeServing) -> None:
    router = APIRouter(tags=["tokenize"])

    @router.post("/tokenize", openapi_extra=JSON_BODY)
    async def tokenize(request: Request) -> Response:
        return await serving.tokenize(request)

    @router.post("/detokenize", openapi_extra=JSON_BODY)
    async def detokenize(request: Request) -> Response:
        return await serving.detokenize(request)

    app.include_router(router)
