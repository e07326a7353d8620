"""The llama.cpp engine: `out=llamacpp`."""

from dynamo.engines.llamacpp._engine import LlamaCppEngine
from dynamo.engines.llamacpp._options import llama_kwargs, sampling_kwargs

__all__ = ["LlamaCppEngine", "llama_kwargs", "sampling_kwargs"]
