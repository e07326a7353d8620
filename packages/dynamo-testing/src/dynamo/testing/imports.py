"""What a fresh interpreter has imported after some code: for the start-up tests that check a
process loads only what its job needs."""

from __future__ import annotations

import subprocess
import sys


def modules_loaded_after(code: str) -> set[str]:
    """The names in `sys.modules` of a new interpreter (this one's executable) once `code` ran."""
    probe = f"{code}\nimport sys\nprint(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())
