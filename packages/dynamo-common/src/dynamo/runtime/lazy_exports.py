"""Package attributes that import their module only when first used (PEP 562).

A package's `__init__` that re-exports names from its modules imports all of those modules with
it, and so does every import of any one of its submodules. Where a module is heavy (the OpenAI
pydantic models take ~0.4 s to build; nats-py pulls in aiohttp) and many processes never use it
(a worker has no use for the HTTP request models), the re-export costs start-up time for
nothing. This gives such a package a module-level `__getattr__` that imports the defining module
on the first access of a name and caches the value in the package, so later accesses are plain
attribute reads. Type checkers see the names through the package's `if TYPE_CHECKING:` imports.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """The `__getattr__` for `package`, whose names are defined in the modules `where` maps
    them to (absolute module names)."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
