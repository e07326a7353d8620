"""The model listing routes and `/version`."""

from dynamo.frontend.http.models.api_router import (
    OPENAPI_ROUTES,
    frontend_version,
    model_row,
    routes,
)

__all__ = ["OPENAPI_ROUTES", "frontend_version", "model_row", "routes"]
