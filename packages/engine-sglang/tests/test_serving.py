"""`dynamo-run in=http out=sglang` serving a small real model (the dynamo-testing plugin's
`gpu_engine_server`, and the checks every GPU engine runs): needs SGLang and an NVIDIA GPU,
skipped otherwise."""

from __future__ import annotations

import pytest

from dynamo.testing.gpu import GpuServingTests

pytestmark = [pytest.mark.gpu, pytest.mark.slow, pytest.mark.timeout(900)]
pytest.importorskip("sglang", reason="needs SGLang")


@pytest.fixture(scope="module")
def checks(gpu_engine_server):
    return gpu_engine_server(
        "sglang", '{"mem_fraction_static": 0.3, "enable_deterministic_inference": true}'
    )


class TestServing(GpuServingTests):
    def test_logprobs_come_back(self, checks) -> None:
        answer = checks.chat(temperature=0, max_tokens=8, logprobs=True, top_logprobs=2)
        content = answer.choices[0].logprobs.content
        assert content and all(len(t.top_logprobs) <= 2 for t in content)
