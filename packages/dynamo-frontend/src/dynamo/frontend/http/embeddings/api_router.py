"""The embeddings route."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from dynamo.frontend.http.embeddings.serving import EmbeddingsServing
from dynamo.frontend.http.openapi import Route
from dynamo.frontend.http.responses.api_router import JSON_BODY
from dynamo.llm.protocols.embeddings import EmbeddingList, EmbeddingRequest

#: The schemas `/openapi.json` shows for this route.
OPENAPI_ROUTES = {
    "/v1/embeddings": Route(method="post", request=EmbeddingRequest, response=EmbeddingList),
}


def attach_router(app: FastAPI, serving: EmbeddingsServing) -> None:
    router = APIRouter(tags=["embeddings"])

    @router.post("/v1/embeddings", openapi_extra=JSON_BODY)
    async def create_embeddings(request: Request) -> Response:
        return await serving.create(request)

    app.include_router(router)
