"""Anthropic Messages (`/v1/messages`) on top of the chat pipeline, behind
`--enable-anthropic-api`."""

from dynamo.frontend.http.anthropic.api_router import OPENAPI_ROUTES, routes
from dynamo.frontend.http.anthropic.serving import AnthropicServing

__all__ = ["OPENAPI_ROUTES", "AnthropicServing", "routes"]
