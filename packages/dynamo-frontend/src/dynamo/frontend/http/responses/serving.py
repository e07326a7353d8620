"""`POST /v1/responses`: a Responses request run as a chat request, answered as a response."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dynamo.frontend.http.chat_run import ChatRunner, fold, sse_event, stream
from dynamo.frontend.http.errors import to_error
from dynamo.frontend.http.metrics import FrontendMetrics
from dynamo.frontend.http.responses.convert import (
    input_items_with_ids,
    items_to_messages,
    to_chat_request,
)
from dynamo.frontend.http.responses.events import ResponseStream
from dynamo.frontend.http.responses.protocol import InputItemsQuery, ResponsesRequest
from dynamo.frontend.http.responses.store import ResponseStore
from dynamo.frontend.http.serving import JSONResponse, error_response, parse_body
from dynamo.frontend.http.sse import SSEResponse
from dynamo.frontend.model_manager import ModelManager
from dynamo.frontend.request_template import RequestTemplate
from dynamo.llm.errors import InvalidRequestError


class ResponsesServing:
    def __init__(
        self,
        models: ModelManager,
        metrics: FrontendMetrics,
        template: RequestTemplate | None = None,
        store: ResponseStore | None = None,
    ):
        self.runner = ChatRunner(models, metrics, "responses")
        self.template = template
        self.store = store if store is not None else ResponseStore()

    async def create(self, http_request: Request) -> Response:
        try:
            request = await parse_body(
                http_request, ResponsesRequest, self.template, "max_output_tokens"
            )
            history: list[dict[str, Any]] = []
            if request.previous_response_id:
                stored = self.store.get(request.previous_response_id, "previous_response_id")
                history = stored.messages
            chat_request, conversation = to_chat_request(request, history)
            run = await self.runner.start(chat_request, http_request.headers.get("x-request-id"))
        except Exception as e:
            return error_response(e)
        builder = ResponseStream(request, run.model.name, run.model.count_tokens)

        def keep() -> None:
            """Store the response, with the conversation it ends, when the request asked to."""
            if request.store:
                response = builder.response()
                answer = items_to_messages(response["output"], "output")
                items = input_items_with_ids(request.input)
                self.store.put(response, [*conversation, *answer], items)

        def failed(exc: Exception) -> list[bytes]:
            return [sse_event(event) for event in builder.fail(to_error(exc)[1]["error"])]

        if request.stream:
            body = stream(run, builder, failed, keep)
            return SSEResponse(body)
        try:
            await fold(run, builder, http_request)
        except Exception as e:
            return error_response(e)
        keep()
        return JSONResponse(builder.response())

    async def retrieve(self, response_id: str) -> Response:
        try:
            return JSONResponse(self.store.get(response_id).response)
        except Exception as e:
            return error_response(e)

    async def input_items(self, response_id: str, http_request: Request) -> Response:
        """A stored response's input items, paged as OpenAI pages them."""
        try:
            query = InputItemsQuery.model_validate(dict(http_request.query_params))
            items = list(self.store.get(response_id).input_items)
            if query.order == "desc":
                items.reverse()
            if query.after is not None:
                ids = [item["id"] for item in items]
                if query.after not in ids:
                    raise InvalidRequestError(
                        f"no input item '{query.after}' in response '{response_id}'",
                        param="after",
                    )
                items = items[ids.index(query.after) + 1 :]
            page = items[: query.limit]
        except Exception as e:
            return error_response(e)
        return JSONResponse(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(items) > len(page),
            }
        )

    async def delete(self, response_id: str) -> Response:
        try:
            self.store.delete(response_id)
        except Exception as e:
            return error_response(e)
        return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})
