"""The run modes never call back into the CLI: `dynamo.frontend.modes` imports nothing from
`dynamo.frontend.cli` (read from the source, so an import inside a function counts too)."""

from __future__ import annotations

import ast
from pathlib import Path

import dynamo.frontend.modes


def test_no_mode_imports_the_cli():
    modes = Path(dynamo.frontend.modes.__file__).parent
    offenders = []
    for path in sorted(modes.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n == "dynamo.frontend.cli" for n in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert {p.stem for p in modes.glob("*.py")} >= {"local", "frontend", "worker", "inputs"}
    assert offenders == []
