"""What start-up defers (the API's models, the chat template module) is done once the server
listens (`http.warm_up`), so that the first request does not pay for it."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys

import uvicorn
from pydantic import BaseModel, ConfigDict, create_model

from dynamo.frontend.http.app import AppState, build_app
from dynamo.frontend.http.server import _Server, listen
from dynamo.frontend.http.warm_up import build_deferred, deferred_models

PREFIX = "dynamo.tests_warm_up"


def deferred(name: str, **fields) -> type[BaseModel]:
    """A model under PREFIX whose build is deferred, as the API's models are."""
    return create_model(
        name, __module__=f"{PREFIX}.{name}", __config__=ConfigDict(defer_build=True), **fields
    )


async def test_build_deferred_builds_each_deferred_model_once():
    first = deferred("First", x=(int, ...))
    second = deferred("Second", inner=(first, ...))
    assert set(deferred_models(PREFIX)) >= {first, second}
    assert not first.__pydantic_complete__ and not second.__pydantic_complete__
    assert await build_deferred(PREFIX) >= 2
    assert first.__pydantic_complete__ and second.__pydantic_complete__
    assert deferred_models(PREFIX) == []
    assert await build_deferred(PREFIX) == 0


async def test_a_model_that_cannot_be_built_is_logged_and_the_rest_are_built(caplog):
    broken = deferred("Broken", x=("NoSuchType", ...))
    fine = deferred("Fine", y=(str, ...))
    with caplog.at_level(logging.ERROR, logger="dynamo.frontend.http.warm_up"):
        await build_deferred(PREFIX)
    assert fine.__pydantic_complete__
    assert not broken.__pydantic_complete__
    assert f"{PREFIX}.Broken" in caplog.text


def test_start_defers_the_api_models_and_the_template_module_and_the_warm_up_does_them():
    """In a fresh interpreter: building the app and the server builds none of the request
    models and imports no chat template module (nor jinja2); the warm-up builds every deferred
    model of ours and imports it."""
    probe = """
import asyncio, json, sys
from dynamo.frontend.http.app import AppState, build_app
from dynamo.frontend.http.warm_up import FIRST_REQUEST_MODULES, deferred_models, warm_up
import dynamo.frontend.http.server
from dynamo.llm.protocols.openai import ChatCompletionRequest
build_app(AppState())
before = [ChatCompletionRequest.__pydantic_complete__, len(deferred_models()),
          sorted(m for m in sys.modules if m in FIRST_REQUEST_MODULES or m == "jinja2")]
asyncio.run(warm_up())
after = [ChatCompletionRequest.__pydantic_complete__, len(deferred_models()),
         sorted(m for m in sys.modules if m in FIRST_REQUEST_MODULES)]
print(json.dumps([before, after]))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    before, after = json.loads(out.stdout)
    assert before[0] is False and before[1] > 20 and before[2] == []
    assert after == [True, 0, ["dynamo.llm.chat_template"]]


async def test_the_server_warms_up_once_it_listens():
    model = deferred("BuiltAfterListening", z=(int, ...))
    state = AppState()
    config = uvicorn.Config(build_app(state), log_config=None, lifespan="off", ws="none")
    server = _Server(config, state)
    sock = listen("127.0.0.1", 0)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(60):  # a guard against hanging, not a measurement
            while server.warm_up is None:
                assert not serving.done()
                await asyncio.sleep(0.01)
        assert server.started  # listening before the warm-up began
        await server.warm_up
        assert model.__pydantic_complete__
    finally:
        server.should_exit = True
        await serving
        sock.close()
