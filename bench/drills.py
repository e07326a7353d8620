"""The fault drills' command line; the drills are the package `drills/` beside this script (see
its docstring, or `drills.py --help`, for what each one does).

    uv run python bench/drills.py kill      # streams through out=dyn while a worker is SIGKILLed
    uv run python bench/drills.py DRILL --help

A script rather than `python -m`: like every bench, it imports `_common` from this folder, which
Python puts on the path for a script; the package `drills` is found there too (a package comes
before a module of the same name).
"""

from __future__ import annotations

from drills.runner import main

if __name__ == "__main__":
    main()
