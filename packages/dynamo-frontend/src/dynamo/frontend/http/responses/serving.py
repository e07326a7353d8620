"""`POST /v1/responses`: a Responses request run as a chat request, answered as a response."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dynamo.frontend.http.chat_run import ChatRunner, fold, sse_event, stream
from dynamo.frontend.http.errors import to_error
from dynamo.frontend.http.metrics import FrontendMetrics
from dynamo.frontend.http.responses.convert import items_to_messages, to_chat_request
from dynamo.frontend.http.responses.events import ResponseStream
from dynamo.frontend.http.responses.protocol import ResponsesRequest
from dynamo.frontend.http.responses.store import ResponseStore
from dynamo.frontend.http.serving import JSONResponse, error_response, parse_body
from dynamo.frontend.model_manager import ModelManager
from dynamo.frontend.request_template import RequestTemplate

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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
                self.store.put(response, [*conversation, *answer])

        def failed(exc: Exception) -> list[bytes]:
            return [sse_event(event) for event in builder.fail(to_error(exc)[1]["error"])]

        if request.stream:
            body = stream(run, builder, failed, keep)
            return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)
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

    async def delete(self, response_id: str) -> Response:
        try:
            self.store.delete(response_id)
        except Exception as e:
            return error_response(e)
        return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})
