"""The Responses API routes: create, retrieve, list a response's input items, and delete."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from dynamo.frontend.http.openapi import Route
from dynamo.frontend.http.responses.protocol import (
    InputItemList,
    ResponseDeleted,
    ResponseObject,
    ResponsesRequest,
    ResponseStreamEvent,
)
from dynamo.frontend.http.responses.serving import ResponsesServing

JSON_BODY = {
    "requestBody": {
        "content": {"application/json": {"schema": {"type": "object"}}},
        "required": True,
    }
}

NOT_STORED = "no such response (never stored, deleted, or evicted from the store)"

#: The schemas `/openapi.json` shows for these routes.
OPENAPI_ROUTES = {
    "/v1/responses": Route(
        method="post",
        request=ResponsesRequest,
        response=ResponseObject,
        chunk=ResponseStreamEvent,
        chunk_description="with stream: true, typed events (`event: response.created` ... "
        "`event: response.completed`), each `data` carrying its `type` and `sequence_number`",
    ),
    "/v1/responses/{response_id}": Route(
        method="get", response=ResponseObject, errors={"404": NOT_STORED}
    ),
    "DELETE /v1/responses/{response_id}": Route(
        method="delete",
        path="/v1/responses/{response_id}",
        response=ResponseDeleted,
        errors={"404": NOT_STORED},
    ),
    "/v1/responses/{response_id}/input_items": Route(
        method="get",
        response=InputItemList,
        errors={"400": "an invalid paging query, or `after` names no item", "404": NOT_STORED},
    ),
}


def attach_router(app: FastAPI, serving: ResponsesServing) -> None:
    router = APIRouter(tags=["responses"])

    @router.post("/v1/responses", openapi_extra=JSON_BODY)
    async def create_response(request: Request) -> Response:
        return await serving.create(request)

    @router.get("/v1/responses/{response_id}")
    async def retrieve_response(response_id: str) -> Response:
        return await serving.retrieve(response_id)

    @router.get("/v1/responses/{response_id}/input_items")
    async def list_input_items(response_id: str, request: Request) -> Response:
        return await serving.input_items(response_id, request)

    @router.delete("/v1/responses/{response_id}")
    async def delete_response(response_id: str) -> Response:
        return await serving.delete(response_id)

    app.include_router(router)
