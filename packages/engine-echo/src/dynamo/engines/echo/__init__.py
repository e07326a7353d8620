"""Echo engines for testing pipelines without a model: `out=echo_core` and `out=echo_full`."""

from dynamo.engines.echo._engines import EchoCoreEngine, EchoFullEngine, token_delay_seconds

__all__ = ["EchoCoreEngine", "EchoFullEngine", "token_delay_seconds"]
