"""`build_app()`: the ASGI application with the OpenAI routes, health, and metrics.

A Starlette application, not FastAPI's: every route reads its own body (a request template
applies first, every error goes through one mapper) and `openapi` writes the document from our
own schemas, so FastAPI's one service here was that document's skeleton, and importing it cost
about as much CPU as everything else on the way to serving (it builds its OpenAPI models and
imports pydantic.v1; issue 14's start-up target). See docs/decisions.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as AppRoute

from dynamo.frontend.admission import Admission, AdmissionOptions
from dynamo.frontend.http import embeddings, models, openapi, responses, tokenize
from dynamo.frontend.http.embeddings import EmbeddingsServing
from dynamo.frontend.http.guards import add_guards
from dynamo.frontend.http.metrics import FrontendMetrics
from dynamo.frontend.http.options import HttpOptions
from dynamo.frontend.http.responses import ResponsesServing, ResponseStore
from dynamo.frontend.http.serving import JSONResponse, OpenAIServing, error_response
from dynamo.frontend.http.tokenize import TokenizeServing
from dynamo.frontend.http.tokenizer_metrics import TokenizerCacheCollector
from dynamo.frontend.model_manager import ModelManager
from dynamo.frontend.readiness import readiness
from dynamo.frontend.request_template import RequestTemplate


@dataclass
class AppState:
    """What the routes share: the served models, the metrics, and whether we are shutting down."""

    models: ModelManager = field(default_factory=ModelManager)
    metrics: FrontendMetrics = field(default_factory=FrontendMetrics)
    shutting_down: bool = False
    request_template: RequestTemplate | None = None
    #: `--enable-anthropic-api`: serve Anthropic Messages at `/v1/messages`.
    anthropic_api: bool = False
    #: Responses kept for `previous_response_id` (in memory, bounded, expiring).
    response_store: ResponseStore = field(default_factory=ResponseStore)
    options: HttpOptions = field(default_factory=HttpOptions)
    admission_options: AdmissionOptions = field(default_factory=AdmissionOptions)

    def __post_init__(self) -> None:
        self.admission = Admission(
            self.admission_options, self.metrics.registry, self.metrics.prefix
        )
        self.models.on_add.append(self.admission.guard)


def _endpoint_families(state: AppState) -> list[AppRoute]:
    """The routes beyond chat and completions, one module per endpoint family, all over the
    same served models (and, for Responses and Anthropic, the same chat pipeline)."""
    template = state.request_template
    found = [
        *models.routes(state.models),
        *responses.routes(
            ResponsesServing(state.models, state.metrics, template, state.response_store)
        ),
        *embeddings.routes(EmbeddingsServing(state.models, state.metrics, template)),
        *tokenize.routes(TokenizeServing(state.models)),
    ]
    if state.anthropic_api:  # imported only then: its protocol models are a tenth of a start
        from dynamo.frontend.http import anthropic

        found += anthropic.routes(anthropic.AnthropicServing(state.models, state.metrics, template))
    return found


def _openapi_routes(state: AppState) -> dict[str, openapi.Route]:
    """Every route's schemas, for `/openapi.json`."""
    routes = {
        **openapi.ROUTES,
        **models.OPENAPI_ROUTES,
        **responses.OPENAPI_ROUTES,
        **embeddings.OPENAPI_ROUTES,
        **tokenize.OPENAPI_ROUTES,
    }
    if state.anthropic_api:
        from dynamo.frontend.http import anthropic

        routes.update(anthropic.OPENAPI_ROUTES)
    return routes


def build_app(state: AppState | None = None) -> Starlette:
    state = state or AppState()
    serving = OpenAIServing(state.models, state.metrics, state.request_template)
    state.metrics.registry.register(TokenizerCacheCollector(state.models, state.metrics.prefix))

    async def chat_completions(request: Request) -> Response:
        return await serving.handle("chat", request)

    async def completions(request: Request) -> Response:
        return await serving.handle("completion", request)

    async def health(request: Request) -> Response:
        ready, body = readiness(state.models, state.shutting_down)
        return JSONResponse(body, status_code=200 if ready else 503)

    async def live(request: Request) -> Response:
        if state.shutting_down:
            return JSONResponse({"status": "shutting_down"}, status_code=503)
        return JSONResponse({"status": "live"})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def http_error(request: Request, exc: Exception) -> Response:
        return error_response(exc)  # an unknown route is a 404 `not_found_error`, and so on

    async def unexpected(request: Request, exc: Exception) -> Response:
        return error_response(exc)

    app = Starlette(
        routes=[
            AppRoute("/v1/chat/completions", chat_completions, methods=["POST"]),
            AppRoute("/v1/completions", completions, methods=["POST"]),
            *_endpoint_families(state),
            AppRoute("/health", health, methods=["GET"]),
            AppRoute("/live", live, methods=["GET"]),
            AppRoute("/metrics", metrics, methods=["GET"]),
        ],
        exception_handlers={StarletteHTTPException: http_error, Exception: unexpected},
    )
    app.state.dynamo = state
    add_guards(app, state.options)
    openapi.install(
        app,
        _openapi_routes(state),
        title="Dynamo-Py",
        description="OpenAI-compatible LLM serving",
        version=models.frontend_version,
    )
    return app
