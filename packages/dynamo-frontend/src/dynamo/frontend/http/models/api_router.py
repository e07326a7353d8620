"""`GET /v1/models`, `GET /v1/models/{id}` (OpenAI's, with vLLM's `max_model_len`) and
`GET /version`."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as AppRoute

from dynamo.frontend.http.openapi import Route
from dynamo.frontend.http.serving import JSONResponse, error_response
from dynamo.frontend.model_manager import ModelManager
from dynamo.llm.protocols.openai import ModelCard, ModelList


class VersionInfo(BaseModel):
    version: str


#: The schemas `/openapi.json` shows for these routes.
OPENAPI_ROUTES = {
    "/v1/models": Route(method="get", response=ModelList),
    "/v1/models/{model_id}": Route(
        method="get", response=ModelCard, errors={"404": "no such model"}
    ),
    "/version": Route(method="get", response=VersionInfo),
}


def model_row(models: ModelManager, name: str) -> ModelCard:
    """One model as `/v1/models` lists it; an alias names its canonical model as `root`."""
    served = models.get(name)
    return ModelCard(
        id=name,
        created=models.created(name),
        root=served.name,
        max_model_len=served.card.context_length if served.card is not None else None,
    )


def frontend_version() -> str:
    """The installed package's version (`importlib.metadata`, imported here, on the first call:
    it is not needed to start serving)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dynamo-frontend")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def routes(models: ModelManager) -> list[AppRoute]:
    async def list_models(request: Request) -> Response:
        data = [model_row(models, name) for name in models.names()]
        return JSONResponse(ModelList(data=data).model_dump())

    async def retrieve_model(request: Request) -> Response:
        try:
            return JSONResponse(model_row(models, request.path_params["model_id"]).model_dump())
        except Exception as e:
            return error_response(e)

    async def get_version(request: Request) -> Response:
        return JSONResponse({"version": frontend_version()})

    return [
        AppRoute("/v1/models", list_models, methods=["GET"]),
        AppRoute("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
        AppRoute("/version", get_version, methods=["GET"]),
    ]
