"""The models this frontend serves right now, by name.

A static `dynamo-run in=http out=<engine>` adds one model at start (under each of its
`--served-model-name` names, the first the canonical one); with `out=dyn` the model watcher adds
and removes models as workers come and go. Readers never lock: a dict swap is atomic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from dynamo.llm.errors import ModelNotFoundError
from dynamo.llm.pipeline import ServedModel

log = logging.getLogger(__name__)


class ModelManager:
    def __init__(self) -> None:
        self._models: dict[str, ServedModel] = {}  # every name, aliases included
        self._created: dict[str, int] = {}
        #: Called with each model before it is served (admission control wraps its engine).
        self.on_add: list[Callable[[ServedModel], None]] = []

    def add(self, model: ServedModel, aliases: tuple[str, ...] | list[str] = ()) -> None:
        """Serve `model` under its name and `aliases` (other names for the same model).

        A model's own name wins over another model's alias (workers of different models may
        disagree under `out=dyn`); an alias that is already another model's name or alias is
        left out, with a warning, rather than taking that model's requests."""
        for hook in self.on_add:
            hook(model)
        names = [model.name]
        for alias in dict.fromkeys(aliases):
            taken = self._models.get(alias)
            if alias == model.name:
                continue
            if taken is not None and taken is not model:
                log.warning(
                    "model '%s': alias '%s' left out, it names model '%s' already",
                    model.name,
                    alias,
                    taken.name,
                )
                continue
            names.append(alias)
        displaced = self._models.get(model.name)
        if displaced is not None and displaced.name != model.name:
            log.warning(
                "model '%s': its name was an alias of '%s'; now it is its own",
                model.name,
                displaced.name,
            )
        for name in names:
            self._created.setdefault(name, int(time.time()))
        self._models = {**self._models, **dict.fromkeys(names, model)}

    def remove(self, name: str) -> ServedModel | None:
        """Stop serving the model called `name`, under all its names."""
        removed = self._models.get(name)
        if removed is None:
            return None
        models = {k: v for k, v in self._models.items() if v is not removed}
        for gone in self._models.keys() - models.keys():
            self._created.pop(gone, None)
        self._models = models
        return removed

    def get(self, name: str) -> ServedModel:
        try:
            return self._models[name]
        except KeyError:
            raise ModelNotFoundError(name) from None

    def names(self) -> list[str]:
        """Every name a request may use, aliases included."""
        return sorted(self._models)

    def served(self) -> list[ServedModel]:
        """Each served model once (aliases not repeated), by canonical name."""
        unique = {id(m): m for m in self._models.values()}
        return sorted(unique.values(), key=lambda m: m.name)

    def created(self, name: str) -> int:
        return self._created.get(name, 0)

    def __len__(self) -> int:
        return len({id(m) for m in self._models.values()})

    def __contains__(self, name: object) -> bool:
        return name in self._models
