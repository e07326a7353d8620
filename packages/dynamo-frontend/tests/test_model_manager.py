"""`ModelManager`: models by every name they answer to, aliases included, and what happens when
two models' names meet (as workers of different models may publish under `out=dyn`)."""

from __future__ import annotations

import logging

import pytest

from dynamo.frontend.model_manager import ModelManager
from dynamo.llm.errors import ModelNotFoundError
from dynamo.llm.model_card import ModelDeploymentCard
from dynamo.llm.model_type import ModelType
from dynamo.llm.pipeline import ServedModel


def model(name: str) -> ServedModel:
    return ServedModel(name, ModelDeploymentCard.for_name_only(name), ModelType.Chat)


def test_aliases_name_the_same_model_and_leave_with_it():
    models = ModelManager()
    a = model("a")
    models.add(a, ["a", "b", "c", "b"])
    assert models.names() == ["a", "b", "c"]
    assert models.get("b") is a and models.get("c") is a
    assert models.served() == [a] and len(models) == 1
    assert models.remove("a") is a
    assert models.names() == [] and "b" not in models
    with pytest.raises(ModelNotFoundError):
        models.get("c")


def test_an_alias_never_takes_another_models_name(caplog):
    models = ModelManager()
    x, y = model("x"), model("y")
    models.add(x)
    with caplog.at_level(logging.WARNING):
        models.add(y, ["x", "z"])
    assert models.get("x") is x and models.get("z") is y
    assert "alias 'x' left out" in caplog.text
    # An alias already taken by one model is not handed to the next one either.
    w = model("w")
    models.add(w, ["z"])
    assert models.get("z") is y
    models.remove("y")
    assert models.names() == ["w", "x"]


def test_a_models_own_name_wins_over_another_models_alias(caplog):
    models = ModelManager()
    x, y = model("x"), model("y")
    models.add(x, ["y"])
    with caplog.at_level(logging.WARNING):
        models.add(y)
    assert models.get("y") is y and models.get("x") is x
    assert "was an alias of 'x'" in caplog.text
    models.remove("x")
    assert models.names() == ["y"]
