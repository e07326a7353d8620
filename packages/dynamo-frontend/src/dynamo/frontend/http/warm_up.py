"""What start-up leaves for later, done once the server is listening.

The HTTP API's request and response models are declared with `defer_build`
(`dynamo.llm.protocols.openai.STRICT_JSON`): pydantic then builds a model's validator at its
first use instead of at import, which took a twentieth of a frontend's start (issue 14). Left
at that, the first request of each kind would pay for it; `build_deferred` builds them all right
after the server starts listening, one model per turn of the event loop, so that requests
arriving meanwhile are served between two models and the first chat request finds its models
built. The modules only a request needs are imported then too (`FIRST_REQUEST_MODULES`), and
what all this made is frozen with the other long-lived objects (`gc_freeze`).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time

from pydantic import BaseModel

from dynamo.frontend.gc_freeze import freeze_long_lived

log = logging.getLogger(__name__)

#: Modules that the first chat request imports and nothing imports before: the chat template's
#: renderer (`OpenAIPreprocessor.formatter`; it imports jinja2, a tenth of a start).
FIRST_REQUEST_MODULES = ("dynamo.llm.chat_template",)


def deferred_models(prefix: str = "dynamo.") -> list[type[BaseModel]]:
    """The models defined in modules under `prefix` that are not built yet."""
    found: list[type[BaseModel]] = []
    pending: list[type[BaseModel]] = [BaseModel]
    seen: set[type[BaseModel]] = set()
    while pending:
        for model in pending.pop().__subclasses__():
            if model in seen:
                continue
            seen.add(model)
            pending.append(model)
            if model.__module__.startswith(prefix) and not model.__pydantic_complete__:
                found.append(model)
    return found


async def build_deferred(prefix: str = "dynamo.") -> int:
    """Build every model `deferred_models(prefix)` names, yielding to the event loop after
    each; how many it built. One that cannot be built is logged with its error (its first use
    raises the same) and the others are still built."""
    started = time.perf_counter()
    built = 0
    for model in deferred_models(prefix):
        if not model.__pydantic_complete__:  # a request may have built it meanwhile
            try:
                model.model_rebuild()
                built += 1
            except Exception:
                log.exception("cannot build the model %s.%s", model.__module__, model.__name__)
        await asyncio.sleep(0)
    log.debug("built %d deferred models in %.3f s", built, time.perf_counter() - started)
    return built


async def warm_up() -> None:
    """What the server runs once it listens: `build_deferred`, the `FIRST_REQUEST_MODULES`,
    then `freeze_long_lived`."""
    await build_deferred()
    for name in FIRST_REQUEST_MODULES:
        importlib.import_module(name)
        await asyncio.sleep(0)
    freeze_long_lived()
