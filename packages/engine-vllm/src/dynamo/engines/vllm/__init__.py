"""The vLLM engine: `out=vllm`. vLLM itself is imported when the engine starts."""

from dynamo.engines.vllm._engine import VllmEngine

__all__ = ["VllmEngine"]
