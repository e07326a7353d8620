"""Dynamo-Py LLM layer: protocols, preprocessing, the engine contract and model registration."""

from dynamo.llm.context import Context
from dynamo.llm.engine import Engine, EngineConfig, EngineError
from dynamo.llm.model_type import ModelType
from dynamo.llm.register import register_llm

__all__ = ["Context", "Engine", "EngineConfig", "EngineError", "ModelType", "register_llm"]
