"""`POST /v1/messages` (and `/v1/messages/count_tokens`): Anthropic Messages over the chat
pipeline."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dynamo.frontend.http.anthropic.convert import to_chat_request, to_count_request
from dynamo.frontend.http.anthropic.errors import anthropic_error, sse_anthropic_error
from dynamo.frontend.http.anthropic.events import MessageStream
from dynamo.frontend.http.anthropic.protocol import CountTokensRequest, MessagesRequest
from dynamo.frontend.http.chat_run import ChatRunner, fold, stream
from dynamo.frontend.http.metrics import FrontendMetrics
from dynamo.frontend.http.serving import JSONResponse, parse_body
from dynamo.frontend.http.sse import SSEResponse
from dynamo.frontend.model_manager import ModelManager
from dynamo.frontend.request_template import RequestTemplate
from dynamo.llm.errors import InvalidRequestError


def error_response(exc: BaseException) -> JSONResponse:
    status, body = anthropic_error(exc)
    return JSONResponse(body, status_code=status)


class AnthropicServing:
    def __init__(
        self,
        models: ModelManager,
        metrics: FrontendMetrics,
        template: RequestTemplate | None = None,
    ):
        self.models = models
        self.runner = ChatRunner(models, metrics, "messages")
        self.template = template

    async def create(self, http_request: Request) -> Response:
        try:
            request = await parse_body(http_request, MessagesRequest, self.template, "max_tokens")
            run = await self.runner.start(
                to_chat_request(request), http_request.headers.get("x-request-id")
            )
        except Exception as e:
            return error_response(e)
        builder = MessageStream(run.model.name, request.stop_sequences, run.prompt_tokens)
        if request.stream:
            body = stream(run, builder, lambda e: [sse_anthropic_error(e)])
            return SSEResponse(body)
        try:
            await fold(run, builder, http_request)
            return JSONResponse(builder.message())
        except Exception as e:
            return error_response(e)

    async def count_tokens(self, http_request: Request) -> Response:
        """The prompt's tokens as the model's chat template and tokenizer make them."""
        try:
            request = await parse_body(http_request, CountTokensRequest)
            served = self.models.get(request.model)
            preprocessor = getattr(served, "preprocessor", None)
            if preprocessor is None:
                raise InvalidRequestError(
                    f"model '{served.name}' templates its prompts itself; its tokens cannot be "
                    "counted here",
                    param="model",
                )
            ids = preprocessor.encode(preprocessor.render_chat(to_count_request(request)))
        except Exception as e:
            return error_response(e)
        return JSONResponse({"input_tokens": len(ids)})
