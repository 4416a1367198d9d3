"""Run Python with some installed packages made unimportable.

``B2U_HIDE=pkg1,pkg2 python tests/hide_packages.py (-c CODE | -m MODULE | SCRIPT) [ARGS...]``

Every finder on ``sys.meta_path`` is wrapped so that the hidden top-level
packages are simply not found, as if they were not installed: ``import``
raises ``ModuleNotFoundError`` and ``importlib.util.find_spec`` returns None,
so code that checks for an optional package behaves as it would without it.
"""

from __future__ import annotations

import importlib.abc
import os
import runpy
import sys

HIDDEN = set(filter(None, os.environ.get("B2U_HIDE", "").split(",")))


class Hide(importlib.abc.MetaPathFinder):
    def __init__(self, inner) -> None:
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN or not hasattr(self.inner, "find_spec"):
            return None
        return self.inner.find_spec(name, path, target)

    def invalidate_caches(self) -> None:
        getattr(self.inner, "invalidate_caches", lambda: None)()


def main(args: list[str]) -> None:
    sys.meta_path[:] = [Hide(finder) for finder in sys.meta_path]
    sys.path[0] = os.getcwd()  # not tests/, as for `python -c` / `python -m`
    if args[0] == "-c":
        sys.argv = ["-c", *args[2:]]
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
    elif args[0] == "-m":
        sys.argv = args[1:]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
