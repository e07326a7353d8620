"""Where a model comes from: a local folder, a GGUF file, or an HF repo id fetched into the HF cache."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from dynamo.llm.engine import EngineError

log = logging.getLogger(__name__)

# What serving needs from a repo: configs, tokenizer, template, and the weights themselves.
SERVING_FILES = [
    "*.json",
    "*.jinja",
    "*.model",
    "*.tiktoken",
    "*.txt",
    "*.safetensors",
    "*.gguf",
]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelNotFoundError(EngineError):
    """The model path is not a local file or folder and cannot be fetched as an HF repo."""


def looks_like_repo_id(value: str) -> bool:
    return bool(_REPO_ID.match(value.removeprefix("hf://")))


def default_model_name(model_path: str) -> str:
    """The seed's rule: an HF id as given, a folder's name, or a GGUF file's name without `.gguf`."""
    if model_path.startswith("hf://"):
        return model_path.removeprefix("hf://")
    path = Path(model_path)
    if path.exists():
        path = path.resolve()
        return path.stem if path.suffix == ".gguf" else path.name
    return model_path


def resolve_model_path(model_path: str, *, progress: bool = True) -> Path:
    """A local path for `model_path`, downloading an HF repo (or using its cache) if needed."""
    if not model_path.startswith("hf://"):
        local = Path(model_path).expanduser()
        if local.exists():
            return local
        if not looks_like_repo_id(model_path):
            raise ModelNotFoundError(
                f"model not found: '{model_path}' is neither a file, a folder, nor an HF repo id"
            )
    repo_id = model_path.removeprefix("hf://")
    return _download(repo_id, progress)


def _download(repo_id: str, progress: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    (enable_progress_bars if progress else disable_progress_bars)()
    log.info(
        "fetching %s from the Hugging Face hub (cache: HF_HOME)%s",
        repo_id,
        " offline" if offline else "",
    )
    try:
        path = snapshot_download(
            repo_id, allow_patterns=SERVING_FILES, token=os.environ.get("HF_TOKEN") or None
        )
    except GatedRepoError:
        raise ModelNotFoundError(
            f"model '{repo_id}' is gated: set HF_TOKEN to a token that has access"
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(
            f"model '{repo_id}' was not found on the Hugging Face hub"
        ) from None
    except LocalEntryNotFoundError:
        raise ModelNotFoundError(
            f"model '{repo_id}' is not in the local HF cache and the hub cannot be reached"
            + (" (HF_HUB_OFFLINE is set)" if offline else "")
        ) from None
    except OSError as e:
        raise ModelNotFoundError(f"cannot fetch model '{repo_id}': {e}") from None
    return Path(path)
