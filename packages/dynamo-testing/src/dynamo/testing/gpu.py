"""The GPU engines' serving tests (marker `gpu`): finding a GPU, and what every GPU engine served
by `dynamo-run in=http` must do."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from dynamo.testing.processes import RunningServer


def nvidia_gpu_count() -> int:
    """How many GPUs `nvidia-smi -L` lists (0 without the tool)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


class GpuServingChecks:
    """What every GPU engine served by `dynamo-run in=http` (model name `smol`) must do, through
    the OpenAI SDK; each engine's test_serving.py runs them against its own server."""

    def __init__(self, server: RunningServer) -> None:
        import openai

        self.client = openai.OpenAI(base_url=server.v1, api_key="none")

    def chat(self, **kw: Any) -> Any:
        ask = {"model": "smol", "messages": [{"role": "user", "content": "Name three colours."}]}
        return self.client.chat.completions.create(**{**ask, **kw})

    def greedy_is_repeatable(self) -> None:
        first = self.chat(temperature=0, max_tokens=24)
        second = self.chat(temperature=0, max_tokens=24)
        assert first.choices[0].message.content
        assert first.choices[0].message.content == second.choices[0].message.content
        assert 0 < first.usage.completion_tokens <= 24

    def seeded_is_repeatable(self) -> None:
        a = self.chat(temperature=1.0, seed=11, max_tokens=12)
        b = self.chat(temperature=1.0, seed=11, max_tokens=12)
        assert a.choices[0].message.content == b.choices[0].message.content

    def streams_and_stops(self) -> None:
        ask = {"model": "smol", "prompt": "1, 2, 3, 4,", "temperature": 0}
        chunks = list(self.client.completions.create(**ask, max_tokens=8, stream=True))
        assert chunks[-1].choices[0].finish_reason in ("length", "stop")
        assert "".join(c.choices[0].text for c in chunks if c.choices)
        stopped = self.client.completions.create(**ask, max_tokens=32, stop=[","])
        assert "," not in stopped.choices[0].text
        assert stopped.choices[0].finish_reason == "stop"


class GpuServingTests:
    """The serving tests every GPU engine runs: `class TestServing(GpuServingTests)` in its
    test_serving.py, beside a module fixture `checks` (its `gpu_engine_server(...)`)."""

    def test_greedy_is_repeatable_and_counts_usage(self, checks: GpuServingChecks) -> None:
        checks.greedy_is_repeatable()

    def test_streams_and_stops_at_max_tokens_and_stop_strings(
        self, checks: GpuServingChecks
    ) -> None:
        checks.streams_and_stops()

    def test_seeded_sampling_is_repeatable(self, checks: GpuServingChecks) -> None:
        checks.seeded_is_repeatable()
