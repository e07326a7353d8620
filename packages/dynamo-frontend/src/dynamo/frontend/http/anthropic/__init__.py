"""Anthropic Messages (`/v1/messages`) on top of the chat pipeline, behind
`--enable-anthropic-api`."""

from dynamo.frontend.http.anthropic.api_router import attach_router
from dynamo.frontend.http.anthropic.serving import AnthropicServing

__all__ = ["AnthropicServing", "attach_router"]
