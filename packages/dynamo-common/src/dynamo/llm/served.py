"""`served_model`: the one place that picks how a model is served, for both paths to a model.

In process (`dynamo-run out=ENGINE`) the engine class says what it is; over the network
(`out=dyn`) the worker's model entry says it (`dynamo.llm.schema.ModelEntry`). Either way the same
facts (the model type, what else it serves, its card) pick the same `ServedModel`, so a model
behaves alike wherever its engine runs.
"""

from __future__ import annotations

from dynamo.llm.embedding_model import EmbeddingModel
from dynamo.llm.features import Feature
from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.model_type import ModelType
from dynamo.llm.pipeline import AsyncEngine, BackendModel, OpenAIEngineModel, ServedModel
from dynamo.llm.postprocess import OutputParsers


def served_model(
    name: str,
    model_type: ModelType,
    card: ModelDeploymentCard | None,
    engine: AsyncEngine,
    *,
    also_serves: frozenset[ModelType] = frozenset(),
    features: frozenset[Feature] | None = None,
    parsers: OutputParsers | None = None,
) -> ServedModel:
    """A Backend engine behind our preprocessing and detokenization; an Embedding engine behind
    `/v1/embeddings`; a Chat or Completion engine taking OpenAI requests itself, for its own
    kind and `also_serves`. `features` None: the card's (`ServedModel`)."""
    if model_type is ModelType.Backend:
        if card is None:
            raise ValueError(f"model '{name}': a Backend engine needs a model card")
        return BackendModel(name, card, engine, features, parsers)
    if model_type is ModelType.Embedding:
        if card is None:
            raise ValueError(f"model '{name}': an Embedding engine needs a model card")
        return EmbeddingModel(name, card, engine)
    serves = frozenset({model_type}) | also_serves
    return OpenAIEngineModel(name, card, engine, serves, features, parsers)


__all__ = ["served_model"]
