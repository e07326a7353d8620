"""OpenAI embeddings (`/v1/embeddings`) for models of type `Embedding`."""

from dynamo.frontend.http.embeddings.api_router import OPENAPI_ROUTES, routes
from dynamo.frontend.http.embeddings.serving import EmbeddingsServing

__all__ = ["OPENAPI_ROUTES", "EmbeddingsServing", "routes"]
