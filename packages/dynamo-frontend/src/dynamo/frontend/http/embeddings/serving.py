"""`POST /v1/embeddings`: one request through an `EmbeddingModel` (in process or behind workers)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from dynamo.frontend.http.chat_run import until_disconnect
from dynamo.frontend.http.metrics import FrontendMetrics
from dynamo.frontend.http.serving import JSONResponse, error_response, parse_body
from dynamo.frontend.model_manager import ModelManager
from dynamo.frontend.request_template import RequestTemplate
from dynamo.llm.embedding_model import EmbeddingModel
from dynamo.llm.errors import ClientDisconnectedError, InvalidRequestError
from dynamo.llm.protocols.embeddings import EmbeddingRequest
from dynamo.runtime.context import Context


class EmbeddingsServing:
    def __init__(
        self,
        models: ModelManager,
        metrics: FrontendMetrics,
        template: RequestTemplate | None = None,
    ):
        self.models = models
        self.metrics = metrics
        self.template = template

    async def create(self, http_request: Request) -> Response:
        try:
            request = await parse_body(http_request, EmbeddingRequest, self.template, None)
            served = self.models.get(request.model)
            if not isinstance(served, EmbeddingModel):
                raise InvalidRequestError(
                    f"model '{served.name}' does not serve embeddings", param="model"
                )
        except Exception as e:
            return error_response(e)
        context = Context(http_request.headers.get("x-request-id"))
        timer = self.metrics.track(served.name, "embeddings", False)
        try:
            output = await until_disconnect(
                lambda: served.embed(request, context), http_request, context
            )
        except asyncio.CancelledError:
            context.kill()
            timer.finish("error")
            raise
        except Exception as e:
            timer.finish("error", disconnected=isinstance(e, ClientDisconnectedError))
            return error_response(e)
        timer.finish("success", output.prompt_tokens)
        return JSONResponse(served.response(request, output))
