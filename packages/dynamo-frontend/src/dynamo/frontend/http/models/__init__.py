"""The model listing routes and `/version`."""

from dynamo.frontend.http.models.api_router import OPENAPI_ROUTES, attach_router, model_row

__all__ = ["OPENAPI_ROUTES", "attach_router", "model_row"]
