"""vLLM's own `LLM.embed` on token ids: the reference the served embeddings must equal.

    python vllm_embed_reference.py MODEL MAX_MODEL_LEN < prompts.json   # [[ids], ...]

Prints one line, `REFERENCE` and the JSON of one vector per prompt (vLLM logs to stdout too).
The same engine arguments as the served tests (the pooling runner, float32, eager), so both runs
do the same arithmetic; vLLM's default pooling parameters (its pooler configuration's
normalization) apply to both.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from vllm import LLM, TokensPrompt

    model, max_model_len = sys.argv[1], int(sys.argv[2])
    prompts = json.load(sys.stdin)
    llm = LLM(
        model=model,
        runner="pooling",
        dtype="float32",
        max_model_len=max_model_len,
        enforce_eager=True,
    )
    outputs = llm.embed([TokensPrompt(prompt_token_ids=p) for p in prompts], use_tqdm=False)
    print("REFERENCE", json.dumps([o.outputs.embedding for o in outputs]), flush=True)


if __name__ == "__main__":  # vLLM spawns its engine core: the guard is required
    main()
