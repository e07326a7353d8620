"""The mistral.rs engine: `out=mistralrs`."""

from dynamo.engines.mistralrs._engine import MistralRsEngine
from dynamo.engines.mistralrs._options import chat_request_kwargs, runner_kwargs

__all__ = ["MistralRsEngine", "chat_request_kwargs", "runner_kwargs"]
