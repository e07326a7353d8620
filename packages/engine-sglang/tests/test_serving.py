"""`dynamo-run in=http out=sglang` serving a small real model (root conftest: `gpu_engine_server`):
needs SGLang and an NVIDIA GPU, skipped otherwise."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.slow, pytest.mark.timeout(900)]
pytest.importorskip("sglang", reason="needs SGLang")


@pytest.fixture(scope="module")
def checks(gpu_engine_server):
    return gpu_engine_server(
        "sglang", '{"mem_fraction_static": 0.3, "enable_deterministic_inference": true}'
    )


def test_greedy_is_repeatable_and_counts_usage(checks) -> None:
    checks.greedy_is_repeatable()


def test_streams_and_stops_at_max_tokens_and_stop_strings(checks) -> None:
    checks.streams_and_stops()


def test_seeded_sampling_is_repeatable(checks) -> None:
    checks.seeded_is_repeatable()


def test_logprobs_come_back(checks) -> None:
    answer = checks.chat(temperature=0, max_tokens=8, logprobs=True, top_logprobs=2)
    content = answer.choices[0].logprobs.content
    assert content and all(len(t.top_logprobs) <= 2 for t in content)
