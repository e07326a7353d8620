"""vLLM's own `LLM.generate`, greedy, on token ids: the reference the served output must equal.

    python vllm_reference.py MODEL MAX_MODEL_LEN MAX_TOKENS < prompts.json   # [[ids], ...]

Prints one line, `REFERENCE` and the JSON of the generated token ids per prompt (vLLM logs to
stdout too). Same engine arguments as the served tests (float32, eager), so the two runs do the
same arithmetic.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from vllm import LLM, SamplingParams, TokensPrompt

    model, max_model_len, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    prompts = json.load(sys.stdin)
    llm = LLM(model=model, dtype="float32", max_model_len=max_model_len, enforce_eager=True)
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, detokenize=False)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params)
    print("REFERENCE", json.dumps([list(o.outputs[0].token_ids) for o in outputs]), flush=True)


if __name__ == "__main__":  # vLLM spawns its engine core: the guard is required
    main()
