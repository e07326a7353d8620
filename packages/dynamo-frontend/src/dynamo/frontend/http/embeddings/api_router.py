"""The embeddings route."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from dynamo.frontend.http.embeddings.serving import EmbeddingsServing
from dynamo.frontend.http.responses.api_router import JSON_BODY


def attach_router(app: FastAPI, serving: EmbeddingsServing) -> None:
    router = APIRouter(tags=["embeddings"])

    @router.post("/v1/embeddings", openapi_extra=JSON_BODY)
    async def create_embeddings(request: Request) -> Response:
        return await serving.create(request)

    app.include_router(router)
