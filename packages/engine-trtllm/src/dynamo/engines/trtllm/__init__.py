"""The TensorRT-LLM engine: `out=trtllm`. TensorRT-LLM is imported when the engine starts."""

from dynamo.engines.trtllm._engine import TrtllmEngine

__all__ = ["TrtllmEngine"]
