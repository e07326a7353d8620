"""`served_model`: one factory picks the ServedModel, for in-process and discovered models alike."""

from __future__ import annotations

import pytest

from dynamo.llm.embedding_model import EmbeddingModel
from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.model_type import ModelType
from dynamo.llm.pipeline import BackendModel, OpenAIEngineModel
from dynamo.llm.served import served_model


class NoEngine:
    """The factory only wraps the engine; nothing here calls it."""

    def generate(self, request, context):
        raise AssertionError("not called")


def test_a_backend_model_gets_our_preprocessing(smollm2_card):
    model = served_model("smol", ModelType.Backend, smollm2_card, NoEngine())
    assert isinstance(model, BackendModel)
    assert model.name == "smol" and model.model_type is ModelType.Backend


def test_an_openai_engine_serves_its_kind_and_what_else_it_says():
    card = ModelDeploymentCard.for_name_only("echo")
    both = served_model(
        "echo", ModelType.Chat, card, NoEngine(), also_serves=frozenset({ModelType.Completion})
    )
    assert isinstance(both, OpenAIEngineModel)
    assert both.serves == {ModelType.Chat, ModelType.Completion}
    completion_only = served_model("c", ModelType.Completion, None, NoEngine())
    assert isinstance(completion_only, OpenAIEngineModel)
    assert completion_only.serves == {ModelType.Completion}


def test_an_embedding_engine_is_served_as_embeddings(smollm2_card):
    model = served_model("e", ModelType.Embedding, smollm2_card, NoEngine())
    assert isinstance(model, EmbeddingModel)


@pytest.mark.parametrize("model_type", [ModelType.Backend, ModelType.Embedding])
def test_token_level_models_need_a_card(model_type):
    with pytest.raises(ValueError, match="needs a model card"):
        served_model("m", model_type, None, NoEngine())
