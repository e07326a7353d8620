"""What stands in front of every route: the body limit, the API key, and CORS."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware

from dynamo.frontend.http.access import ApiKeyMiddleware, ApiKeys
from dynamo.frontend.http.body_limit import BodyLimitMiddleware
from dynamo.frontend.http.options import HttpOptions


def add_guards(app: Starlette, options: HttpOptions) -> None:
    """Install the middleware; the last added runs first: CORS answers a browser's preflight
    (which carries no key) before the key is checked, and no body is read for a request
    without a valid key."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=options.max_body_bytes)
    if options.api_keys:
        app.add_middleware(
            ApiKeyMiddleware,
            keys=ApiKeys(options.api_keys),
            protect_metrics=options.protect_metrics,
        )
    if options.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(options.allowed_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["*"],
        )
