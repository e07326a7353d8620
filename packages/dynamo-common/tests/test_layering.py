"""The layers point one way: `dynamo.runtime` is the bottom and imports nothing above it.

Read from the source with `ast`, so an import inside a function (or under `TYPE_CHECKING`) counts
as much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dynamo.runtime

RUNTIME = Path(dynamo.runtime.__file__).parent
ABOVE_RUNTIME = ("dynamo.llm", "dynamo.frontend", "dynamo.engines")


def imported_modules(path: Path, src: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in a file under `src`; relative ones resolved."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # `from ..llm import x` inside dynamo.runtime
                package = path.relative_to(src).parent.parts
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found += [(node.lineno, module)]
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def is_above(module: str) -> bool:
    return any(module == top or module.startswith(f"{top}.") for top in ABOVE_RUNTIME)


def upward_imports(root: Path) -> list[str]:
    """`file:line` of every import under `root` (a `dynamo/runtime` folder) of a higher layer."""
    return sorted(
        {
            f"{path.relative_to(root)}:{line}"
            for path in root.rglob("*.py")
            for line, module in imported_modules(path, root.parent.parent)
            if is_above(module)
        }
    )


def test_runtime_imports_nothing_above_it():
    assert upward_imports(RUNTIME) == []


def test_the_check_sees_every_form_of_import(tmp_path):
    fake = tmp_path / "dynamo" / "runtime"
    fake.mkdir(parents=True)
    (fake / "a.py").write_text("import dynamo.llm.errors\n")
    (fake / "b.py").write_text("def f():\n    from dynamo.llm import Context\n")
    (fake / "c.py").write_text("from .. import llm\n")
    (fake / "d.py").write_text("from dynamo import frontend\n")
    (fake / "ok.py").write_text("from dynamo.runtime.context import Context\nimport asyncio\n")
    found = upward_imports(fake)
    assert found == ["a.py:1", "b.py:2", "c.py:1", "d.py:1"]
