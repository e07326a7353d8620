"""The embeddings route."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as AppRoute

from dynamo.frontend.http.embeddings.serving import EmbeddingsServing
from dynamo.frontend.http.openapi import Route
from dynamo.llm.protocols.embeddings import EmbeddingList, EmbeddingRequest

#: The schemas `/openapi.json` shows for this route.
OPENAPI_ROUTES = {
    "/v1/embeddings": Route(method="post", request=EmbeddingRequest, response=EmbeddingList),
}


def routes(serving: EmbeddingsServing) -> list[AppRoute]:
    async def create_embeddings(request: Request) -> Response:
        return await serving.create(request)

    return [AppRoute("/v1/embeddings", create_embeddings, methods=["POST"])]
