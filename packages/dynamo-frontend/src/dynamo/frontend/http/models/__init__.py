"""The model listing routes and `/version`."""

from dynamo.frontend.http.models.api_router import attach_router, model_row

__all__ = ["attach_router", "model_row"]
