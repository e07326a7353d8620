"""The OpenAI Responses API (`/v1/responses`) on top of the chat pipeline."""

from dynamo.frontend.http.responses.api_router import attach_router
from dynamo.frontend.http.responses.serving import ResponsesServing
from dynamo.frontend.http.responses.store import ResponseStore

__all__ = ["ResponseStore", "ResponsesServing", "attach_router"]
