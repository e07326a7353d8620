"""The seed's "Writing your own engine in Python" example, with a real engine filled in.

Run etcd and NATS (with JetStream), then:

    MODEL_PATH=path/to/SmolLM2-135M-Instruct.Q4_1.gguf python examples/hello_worker.py
    dynamo-run in=http out=dyn      # in another terminal

The engine is llama.cpp (llama-cpp-python) driven token by token: a Backend engine receives
`token_ids` from the frontend's preprocessing and streams token ids back.
"""

import asyncio
import os

import uvloop

from dynamo.llm import ModelType, register_llm
from dynamo.runtime import DistributedRuntime, dynamo_worker


# 1. Decorate a function to get the runtime
#
@dynamo_worker(static=False)
async def worker(runtime: DistributedRuntime):
    # 2. Register ourselves on the network
    #
    component = runtime.namespace("namespace").component("component")
    await component.create_service()
    model_path = os.environ.get("MODEL_PATH", "Qwen/Qwen3-0.6B")  # or "/data/models/Qwen3-0.6B"
    model_type = ModelType.Backend
    endpoint = component.endpoint("endpoint")
    # Optional last param to register_llm is model_name. If not present derives it from model_path
    await register_llm(model_type, endpoint, model_path, os.environ.get("MODEL_NAME"))

    # Initialize your engine here
    from llama_cpp import Llama

    engine = Llama(model_path=model_path, n_ctx=2048, verbose=False)

    # 3. Attach request handler
    #
    await endpoint.serve_endpoint(RequestHandler(engine).generate)


class RequestHandler:
    def __init__(self, engine):
        self.engine = engine
        self.lock = asyncio.Lock()

    async def generate(self, request):
        # Call the engine: one token at a time on a thread, so the event loop stays free.
        max_tokens = request["stop_conditions"].get("max_tokens") or 64
        eos = set(request.get("eos_token_ids") or [])
        temperature = request["sampling_options"].get("temperature", 1.0)
        async with self.lock:
            tokens = self.engine.generate(
                request["token_ids"], temp=temperature, top_k=0, top_p=1.0, min_p=0.0
            )
            for _ in range(max_tokens):
                token = await asyncio.to_thread(next, tokens)
                if token in eos:
                    # yield result dict
                    yield {"token_ids": [], "finish_reason": "stop"}
                    return
                yield {"token_ids": [token]}
        yield {"token_ids": [], "finish_reason": "length"}


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(worker())
