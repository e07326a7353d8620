"""Model paths: local files and folders as they are, HF repo ids through the cache, never the network.

The hub cache used here is a folder laid out as huggingface_hub lays it out (refs/main naming a
snapshot); offline mode makes sure no test reaches the hub.
"""

from __future__ import annotations

import huggingface_hub.constants
import pytest
from huggingface_hub.utils import are_progress_bars_disabled

from dynamo.llm.errors import EngineError, ModelPathError
from dynamo.llm.model_source import (
    default_model_name,
    looks_like_repo_id,
    pick_gguf,
    resolve_model_path,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty hub cache, offline: `add(repo, *files)` puts a snapshot of `repo` in it."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def add(repo_id: str, *files: str):
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(COMMIT)
        snapshot = repo / "snapshots" / COMMIT
        snapshot.mkdir(parents=True)
        for name in files:
            (snapshot / name).write_text("{}")
        return snapshot

    return add


def test_local_file_and_folder_are_returned_as_they_are(tmp_path, smollm2_gguf):
    assert resolve_model_path(str(smollm2_gguf)) == smollm2_gguf
    (tmp_path / "Model").mkdir()
    assert resolve_model_path(str(tmp_path / "Model")) == tmp_path / "Model"


def test_missing_local_path_is_one_clear_error():
    with pytest.raises(ModelPathError, match="neither a file") as info:
        resolve_model_path("/no/such/model.gguf")
    assert isinstance(info.value, EngineError)
    assert "\n" not in str(info.value) and "/no/such/model.gguf" in str(info.value)


def test_hf_prefix_needs_a_repo_id():
    with pytest.raises(ModelPathError, match="neither"):
        resolve_model_path("hf://not a repo")


def test_offline_cache_miss_is_one_clear_error(hub_cache):
    with pytest.raises(ModelPathError, match="HF_HUB_OFFLINE") as info:
        resolve_model_path("someone/not-cached-model", progress=False)
    assert "\n" not in str(info.value)


def test_offline_cache_hit_returns_the_snapshot(hub_cache):
    snapshot = hub_cache("org/Model", "config.json", "tokenizer.json", "model.safetensors")
    assert resolve_model_path("org/Model", progress=False) == snapshot
    assert resolve_model_path("hf://org/Model", progress=False) == snapshot


def test_offline_gguf_repo_returns_one_gguf_file(hub_cache):
    snapshot = hub_cache("org/Model-GGUF", "Model.Q8_0.gguf", "Model.Q4_K_M.gguf")
    assert resolve_model_path("org/Model-GGUF") == snapshot / "Model.Q4_K_M.gguf"
    assert resolve_model_path("org/Model-GGUF:q8_0") == snapshot / "Model.Q8_0.gguf"
    with pytest.raises(ModelPathError, match="no GGUF file for 'Q2_K'"):
        resolve_model_path("org/Model-GGUF:Q2_K")


def test_progress_bar_setting_is_restored(hub_cache):
    before = are_progress_bars_disabled()
    with pytest.raises(ModelPathError):
        resolve_model_path("someone/missing", progress=not before)
    assert are_progress_bars_disabled() == before


def test_pick_gguf():
    files = ["README.md", "m-Q8_0.gguf", "m-Q4_K_M.gguf", "m-IQ2_XS.gguf"]
    assert pick_gguf(files, None) == ["m-Q4_K_M.gguf"]
    assert pick_gguf(files, "Q8_0") == ["m-Q8_0.gguf"]
    assert pick_gguf(["b.gguf", "a.gguf"], None) == ["a.gguf"]
    assert pick_gguf(["config.json"], None) == []
    shards = ["big-Q4_K_M-00002-of-00002.gguf", "big-Q4_K_M-00001-of-00002.gguf", "big-Q8_0.gguf"]
    assert pick_gguf(shards, None) == sorted(shards[:2])  # the first shard comes first


def test_default_model_names(tmp_path, smollm2_gguf):
    assert default_model_name("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B"
    assert default_model_name("hf://Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B"
    assert default_model_name(str(smollm2_gguf)) == "SmolLM2-135M-Instruct.Q4_1"
    (tmp_path / "Llama-3.2-3B").mkdir()
    assert default_model_name(str(tmp_path / "Llama-3.2-3B") + "/") == "Llama-3.2-3B"


def test_repo_id_shape():
    assert looks_like_repo_id("Qwen/Qwen3-0.6B") and looks_like_repo_id("hf://a/b")
    assert looks_like_repo_id("org/Model-GGUF:Q4_K_M")
    assert not looks_like_repo_id("model.gguf") and not looks_like_repo_id("/abs/path")
    assert not looks_like_repo_id("a/b/c")
