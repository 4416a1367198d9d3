"""The import graph of napari_b2u's modules, and its cycles.

Every import counts, the lazy ones inside functions included; imports under
``if TYPE_CHECKING:`` do not (they never run). ``python scripts/import_graph.py``
prints the cycles (none expected) and each module's imports;
``tests/test_api.py`` fails on any cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_graph(package: str = "napari_b2u") -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``."""
    root = SRC / package
    files = {}
    for f in root.rglob("*.py"):
        name = ".".join(f.relative_to(SRC).with_suffix("").parts)
        files[name.removesuffix(".__init__")] = f
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, f in files.items():
        here = module if f.name == "__init__.py" else module.rsplit(".", 1)[0]
        tree = ast.parse(f.read_text())
        typing_only = {
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for stmt in block.body
            for n in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rsplit(".", 1)[0] if "." in target else ""
                # a package's own submodules and its parents are not edges of interest
                if target and target != module and not module.startswith(target + "."):
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


if __name__ == "__main__":
    g = module_graph()
    print(f"{len(g)} modules, {sum(map(len, g.values()))} imports; cycles: {cycles(g) or 'none'}")
    for m in sorted(g):
        if g[m]:
            short = sorted(t.removeprefix("napari_b2u.") for t in g[m])
            print(f"{m.removeprefix('napari_b2u.')} -> {', '.join(short)}")
