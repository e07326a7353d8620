"""`build_app()`: the FastAPI application with the OpenAI routes, health, and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from dynamo.frontend.admission import Admission, AdmissionOptions
from dynamo.frontend.http import anthropic, embeddings, models, openapi, responses, tokenize
from dynamo.frontend.http.anthropic import AnthropicServing
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


def _attach_endpoint_families(app: FastAPI, state: AppState) -> None:
    """The routes beyond chat and completions, one router per endpoint family, all over the
    same served models (and, for Responses and Anthropic, the same chat pipeline)."""
    template = state.request_template
    models.attach_router(app, state.models)
    responses.attach_router(
        app, ResponsesServing(state.models, state.metrics, template, state.response_store)
    )
    embeddings.attach_router(app, EmbeddingsServing(state.models, state.metrics, template))
    tokenize.attach_router(app, TokenizeServing(state.models))
    if state.anthropic_api:
        anthropic.attach_router(app, AnthropicServing(state.models, state.metrics, template))


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
        routes.update(anthropic.OPENAPI_ROUTES)
    return routes


def build_app(state: AppState | None = None) -> FastAPI:
    state = state or AppState()
    app = FastAPI(
        title="Dynamo-Py",
        description="OpenAI-compatible LLM serving",
        docs_url="/docs",
        # FastAPI's own OpenTelemetry looks for a configured provider on every request (a few
        # environment lookups, ~4% of the frontend's CPU under streaming load); we export our
        # metrics with Prometheus and have no OpenTelemetry setup for it to find.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.dynamo = state
    add_guards(app, state.options)
    serving = OpenAIServing(state.models, state.metrics, state.request_template)
    state.metrics.registry.register(TokenizerCacheCollector(state.models, state.metrics.prefix))

    _body = {
        "requestBody": {
            "content": {"application/json": {"schema": {"type": "object"}}},
            "required": True,
        }
    }

    @app.post("/v1/chat/completions", openapi_extra=_body)
    async def chat_completions(request: Request) -> Response:
        return await serving.handle("chat", request)

    @app.post("/v1/completions", openapi_extra=_body)
    async def completions(request: Request) -> Response:
        return await serving.handle("completion", request)

    _attach_endpoint_families(app, state)

    @app.get("/health")
    async def health() -> Response:
        ready, body = readiness(state.models, state.shutting_down)
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/live")
    async def live() -> Response:
        if state.shutting_down:
            return JSONResponse({"status": "shutting_down"}, status_code=503)
        return JSONResponse({"status": "live"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc)  # an unknown route is a 404 `not_found_error`, and so on

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        return error_response(exc)

    openapi.install(app, _openapi_routes(state))
    return app
