"""Engine feature declarations and the frontend's refusal of what an engine cannot honour."""

import pytest

from dynamo.llm.errors import InvalidRequestError
from dynamo.llm.features import (
    UNDECLARED,
    Feature,
    check_features,
    guided_feature,
    missing_features,
    parse_features,
)


def test_undeclared_card_gets_sampling_but_not_logprobs_or_guided():
    features = parse_features(None)
    assert features == UNDECLARED
    assert Feature.TEMPERATURE in features
    assert Feature.LOGPROBS not in features
    assert Feature.GUIDED_JSON not in features


def test_unknown_declared_names_are_dropped():
    assert parse_features(["logprobs", "teleport"]) == {Feature.LOGPROBS}


def test_unsampled_engine_accepts_every_sampling_knob_but_not_logprobs():
    features = frozenset({Feature.UNSAMPLED})
    needed = {Feature.TEMPERATURE: "temperature", Feature.LOGIT_BIAS: "logit_bias"}
    assert missing_features(needed, features) == []
    needed[Feature.LOGPROBS] = "top_logprobs"
    assert missing_features(needed, features) == [(Feature.LOGPROBS, "top_logprobs")]


def test_refusal_names_the_field_and_the_model():
    with pytest.raises(InvalidRequestError) as e:
        check_features({Feature.GUIDED_REGEX: "nvext.guided_regex"}, UNDECLARED, "m", "mocker")
    assert e.value.param == "nvext.guided_regex"
    assert "'m'" in e.value.message and "mocker" in e.value.message
    assert e.value.code == "unsupported_parameter"


def test_guided_kind_names():
    assert guided_feature("json") is Feature.GUIDED_JSON
    assert guided_feature("choice") is Feature.GUIDED_CHOICE


def test_declared_features_travel_with_the_card():
    from dynamo.llm.features import declare
    from dynamo.llm.model_card import ModelDeploymentCard

    card = ModelDeploymentCard(display_name="m")
    declare(card, {Feature.LOGPROBS, Feature.GUIDED_JSON}, "vllm")
    card.runtime_config["tool_call_parser"] = "hermes"
    remote = ModelDeploymentCard.from_json(card.to_json())
    assert parse_features(remote.features) == {Feature.LOGPROBS, Feature.GUIDED_JSON}
    assert remote.runtime_config == {"engine": "vllm", "tool_call_parser": "hermes"}
