"""vLLM's `/tokenize` and `/detokenize`."""

from dynamo.frontend.http.tokenize.api_router import attach_router
from dynamo.frontend.http.tokenize.serving import TokenizeServing

__all__ = ["TokenizeServing", "attach_router"]
