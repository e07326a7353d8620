"""vLLM's own offline API on token ids: the reference our served output must equal.

    python vllm_reference.py generate MODEL MAX_MODEL_LEN MAX_TOKENS < prompts.json  # [[ids], ...]
    python vllm_reference.py embed MODEL MAX_MODEL_LEN < prompts.json

`generate` is `LLM.generate`, greedy: the generated token ids per prompt. `embed` is `LLM.embed`
on the pooling runner: one vector per prompt, with vLLM's default pooling parameters (its pooler
configuration's normalization), as the served embeddings get. Both use the served tests' engine
arguments (float32, eager), so the two runs do the same arithmetic.

Prints one line, `REFERENCE` and the JSON result (vLLM logs to stdout too), then shuts the engine
down and leaves with `os._exit`: the interpreter's normal exit runs C++ static destructors while
torch's threads still run, and on a loaded host that sometimes aborts the process ("terminate
called without an active exception", exit -6) after the result was printed.
"""

from __future__ import annotations

import json
import os
import sys


def _generate(llm, prompts: list, max_tokens: int) -> list:
    from vllm import SamplingParams, TokensPrompt

    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, detokenize=False)
    outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params)
    return [list(o.outputs[0].token_ids) for o in outputs]


def _embed(llm, prompts: list) -> list:
    from vllm import TokensPrompt

    outputs = llm.embed([TokensPrompt(prompt_token_ids=p) for p in prompts], use_tqdm=False)
    return [o.outputs.embedding for o in outputs]


def main() -> None:
    from vllm import LLM

    kind, model, max_model_len = sys.argv[1], sys.argv[2], int(sys.argv[3])
    prompts = json.load(sys.stdin)
    engine_args: dict = {"dtype": "float32", "max_model_len": max_model_len, "enforce_eager": True}
    if kind == "embed":
        engine_args["runner"] = "pooling"
    llm = LLM(model=model, **engine_args)
    result = _embed(llm, prompts) if kind == "embed" else _generate(llm, prompts, int(sys.argv[4]))
    print("REFERENCE", json.dumps(result), flush=True)
    llm.llm_engine.engine_core.shutdown()  # the spawned engine core, before leaving
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":  # vLLM spawns its engine core: the guard is required
    main()
