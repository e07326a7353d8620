"""The OpenAI Responses API (`/v1/responses`) on top of the chat pipeline."""

from dynamo.frontend.http.responses.api_router import OPENAPI_ROUTES, routes
from dynamo.frontend.http.responses.serving import ResponsesServing
from dynamo.frontend.http.responses.store import ResponseStore

__all__ = ["OPENAPI_ROUTES", "ResponseStore", "ResponsesServing", "routes"]
