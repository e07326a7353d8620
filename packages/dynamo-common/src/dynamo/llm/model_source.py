"""Where a model comes from: a local folder, a GGUF file, or an HF repo fetched into the HF cache.

A repo id downloads only what serving needs: configs, tokenizer, chat template and weights. A repo
of GGUF files holds one file per quantization, often tens of GB each, so one is picked: the one
named after `:QUANT` (`org/repo-GGUF:Q8_0`, llama.cpp's `-hf` syntax), else Q4_K_M, else the first;
GGUF files are skipped in a repo that also has safetensors. The hub cache, `HF_TOKEN` and
`HF_HUB_OFFLINE` are honoured, the last two read at call time (huggingface_hub reads them once,
at import); offline, the cached snapshot is used as it is.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from dynamo.llm.errors import ModelPathError

log = logging.getLogger(__name__)

# What serving needs from a repo: configs, tokenizer, template, and the weights themselves.
SERVING_FILES = ["*.json", "*.jinja", "*.model", "*.tiktoken", "*.txt", "*.safetensors"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?$")
_PREFERRED_QUANT = "Q4_K_M"
_TRUE = ("1", "true", "yes", "on")


def looks_like_repo_id(value: str) -> bool:
    """`org/name` or `org/name:QUANT`, optionally with an `hf://` prefix."""
    return bool(_REPO_ID.match(value.removeprefix("hf://")))


def default_model_name(model_path: str) -> str:
    """The seed's rule: an HF id as given, a folder's name, or a GGUF file's name without `.gguf`."""
    if model_path.startswith("hf://"):
        return model_path.removeprefix("hf://")
    path = Path(model_path).expanduser()
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
        raise ModelPathError(
            f"model not found: '{model_path}' is neither a file, a folder, nor an HF repo id"
        )
    repo_id, _, quant = model_path.removeprefix("hf://").partition(":")
    return _download(repo_id, quant or None, progress)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def pick_gguf(files: list[str], quant: str | None) -> list[str]:
    """The GGUF file (all its shards) to fetch from a repo's file list, or [] if it has none."""
    ggufs = sorted(f for f in files if f.endswith(".gguf"))
    for want in (quant, _PREFERRED_QUANT) if quant else (_PREFERRED_QUANT,):
        matches = [f for f in ggufs if want.lower() in Path(f).name.lower()]
        if matches:
            return matches
        if want == quant:
            raise ModelPathError(f"no GGUF file for '{quant}' among: {', '.join(ggufs) or '-'}")
    return ggufs[:1]


def _download(repo_id: str, quant: str | None, progress: bool) -> Path:
    from huggingface_hub import list_repo_files, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE
    token = os.environ.get("HF_TOKEN") or None
    was_disabled = are_progress_bars_disabled()
    (enable_progress_bars if progress else disable_progress_bars)()
    log.info("fetching %s from the Hugging Face hub%s", repo_id, " (offline)" if offline else "")
    try:
        local_only, weights = offline, []
        patterns = list(SERVING_FILES)
        if not offline:
            try:
                files = list_repo_files(repo_id, token=token)
            except (RepositoryNotFoundError, GatedRepoError):
                raise
            except Exception as e:  # the hub is unreachable: the cache may still have the model
                log.warning(
                    "cannot list %s on the hub (%s); trying the cache", repo_id, _one_line(e)
                )
                local_only = True
            else:
                if quant or not any(f.endswith(".safetensors") for f in files):
                    weights = pick_gguf(files, quant)
                    patterns = [p for p in patterns if p != "*.safetensors"] + weights
        folder = Path(
            snapshot_download(
                repo_id, allow_patterns=patterns, token=token, local_files_only=local_only
            )
        )
    except GatedRepoError:
        raise ModelPathError(
            f"model '{repo_id}' is gated: set HF_TOKEN to a token that has access"
        ) from None
    except RepositoryNotFoundError:
        raise ModelPathError(
            f"model '{repo_id}' was not found on the Hugging Face hub"
            + ("" if token else " (if it is private, set HF_TOKEN)")
        ) from None
    except LocalEntryNotFoundError:
        raise ModelPathError(
            f"model '{repo_id}' is not in the local HF cache and the hub cannot be reached"
            + (" (HF_HUB_OFFLINE is set)" if offline else "")
        ) from None
    except OSError as e:
        raise ModelPathError(f"cannot fetch model '{repo_id}': {_one_line(e)}") from None
    finally:
        (disable_progress_bars if was_disabled else enable_progress_bars)()
    if weights:
        return folder / weights[0]
    # From the cache alone: a GGUF repo's snapshot holds whichever files were fetched before.
    if quant or not any(folder.glob("*.safetensors")):
        cached = pick_gguf([p.name for p in folder.glob("*.gguf")], quant)
        if cached:
            return folder / cached[0]
    return folder
