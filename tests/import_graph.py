"""The package's import graph, read from the source with ``ast`` (nothing is imported): the
layer of each module, every import of a package module (at module or function level) and the
import loops. Used by tests/test_layers.py and benchmarks/structure.py."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository root."""
LAYERS = ("schemas", "engine", "actors", "jobs", "facade")


def package_files() -> dict[str, Path]:
    """Module name -> file, for every module of the ``pluralign`` package in this checkout."""
    out: dict[str, Path] = {}
    for top in ("engine", "actors", "jobs", "schemas"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(["pluralign", *parts])] = path
    for path in sorted((ROOT / "pluralign").glob("*.py")):
        name = "pluralign" if path.stem == "__init__" else f"pluralign.{path.stem}"
        out[name] = path
    return out


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS[:4]:
        return LAYERS.index(parts[1])
    return LAYERS.index("facade")


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, bool]]:
    """(imported package module, at function level) for each import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node

    def in_function(node: ast.AST) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return True
        return False

    def type_checking_only(node: ast.AST) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                return True
        return False

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_pkg, node)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                     for a in node.names]
        else:
            continue
        if type_checking_only(node):
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            # Importing a.b.c runs a/__init__ and a/b/__init__ first: edges to those too
            # (a package's __init__ that imports its modules can close a loop that way).
            parts = name.split(".")
            for depth in range(2, len(parts) + 1):
                target = ".".join(parts[:depth])
                if target in known and target != module and not module.startswith(target + "."):
                    yield target, in_function(node)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


