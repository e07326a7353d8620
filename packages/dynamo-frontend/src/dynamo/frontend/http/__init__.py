"""The OpenAI-compatible HTTP server: `build_app()` assembles the routers."""

from dynamo.frontend.http.app import build_app

__all__ = ["build_app"]
