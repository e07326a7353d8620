"""The SGLang engine: `out=sglang`. SGLang itself is imported when the engine starts."""

from dynamo.engines.sglang._engine import SGLangEngine

__all__ = ["SGLangEngine"]
