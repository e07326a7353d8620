"""The models this frontend serves right now, by name.

A static `dynamo-run in=http out=<engine>` adds one model at start; with `out=dyn` the model
watcher adds and removes models as workers come and go. Readers never lock: a dict swap is atomic.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dynamo.llm.errors import ModelNotFoundError
from dynamo.llm.pipeline import ServedModel


class ModelManager:
    def __init__(self) -> None:
        self._models: dict[str, ServedModel] = {}
        self._created: dict[str, int] = {}
        #: Called with each model before it is served (admission control wraps its engine).
        self.on_add: list[Callable[[ServedModel], None]] = []

    def add(self, model: ServedModel) -> None:
        for hook in self.on_add:
            hook(model)
        self._created.setdefault(model.name, int(time.time()))
        self._models = {**self._models, model.name: model}

    def remove(self, name: str) -> ServedModel | None:
        models = dict(self._models)
        removed = models.pop(name, None)
        self._created.pop(name, None)
        self._models = models
        return removed

    def get(self, name: str) -> ServedModel:
        try:
            return self._models[name]
        except KeyError:
            raise ModelNotFoundError(name) from None

    def names(self) -> list[str]:
        return sorted(self._models)

    def created(self, name: str) -> int:
        return self._created.get(name, 0)

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, name: object) -> bool:
        return name in self._models
