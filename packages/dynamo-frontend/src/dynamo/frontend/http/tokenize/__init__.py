"""vLLM's `/tokenize` and `/detokenize`."""

from dynamo.frontend.http.tokenize.api_router import OPENAPI_ROUTES, routes
from dynamo.frontend.http.tokenize.serving import TokenizeServing

__all__ = ["OPENAPI_ROUTES", "TokenizeServing", "routes"]
