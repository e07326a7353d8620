"""The llama.cpp engine: `out=llamacpp`, continuous batching over llama-cpp-python's low-level API."""

from dynamo.engines.llamacpp._engine import LlamaCppEngine
from dynamo.engines.llamacpp._options import EngineSettings, default_threads
from dynamo.engines.llamacpp._sampling import SamplingParams

__all__ = ["EngineSettings", "LlamaCppEngine", "SamplingParams", "default_threads"]
