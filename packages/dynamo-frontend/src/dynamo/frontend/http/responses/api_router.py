"""The Responses API routes: create, retrieve, list a response's input items, and delete."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as AppRoute

from dynamo.frontend.http.openapi import Route
from dynamo.frontend.http.responses.protocol import (
    InputItemList,
    ResponseDeleted,
    ResponseObject,
    ResponsesRequest,
    ResponseStreamEvent,
)
from dynamo.frontend.http.responses.serving import ResponsesServing

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


def routes(serving: ResponsesServing) -> list[AppRoute]:
    async def create_response(request: Request) -> Response:
        return await serving.create(request)

    async def retrieve_response(request: Request) -> Response:
        return await serving.retrieve(request.path_params["response_id"])

    async def list_input_items(request: Request) -> Response:
        return await serving.input_items(request.path_params["response_id"], request)

    async def delete_response(request: Request) -> Response:
        return await serving.delete(request.path_params["response_id"])

    return [
        AppRoute("/v1/responses", create_response, methods=["POST"]),
        AppRoute("/v1/responses/{response_id}", retrieve_response, methods=["GET"]),
        AppRoute("/v1/responses/{response_id}/input_items", list_input_items, methods=["GET"]),
        AppRoute("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
    ]
