"""Print figures of the package's structure: its import graph by layer, import loops, imports
that run up a layer, function-level imports, explicit ``Any`` annotations, and a traced walk of
one ``pluralign sweep`` from the command-line entry through the package's functions.

    python benchmarks/structure.py            # the static figures
    python benchmarks/structure.py --walk     # and the traced walk (runs a tiny sweep)

Layers, lowest first: schemas, engine, actors, jobs, the facade (``pluralign/*.py``). A module
may import its own layer and those below; an import of a higher layer is counted as "up".
The walk counts the modules whose functions are called and, over the distinct (caller, callee)
pairs of functions in the package whose modules differ, the moves between modules and the
climbs (a call from a lower layer into a higher one).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.import_graph import (
    LAYERS,
    ROOT,
    imports,
    layer,
    package_files,
    strongly_connected,
)


def explicit_any(path: Path) -> int:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return sum(1 for n in ast.walk(tree)
               if (isinstance(n, ast.Name) and n.id == "Any")
               or (isinstance(n, ast.Attribute) and n.attr == "Any"))


def static_figures() -> None:
    files = package_files()
    known = set(files)
    graph: dict[str, set[str]] = defaultdict(set)
    module_level: dict[str, set[str]] = defaultdict(set)
    up: list[tuple[str, str]] = []
    facade_fn_imports = 0
    fn_imports = 0
    for module, path in files.items():
        for target, in_fn in imports(module, path, known):
            graph[module].add(target)
            if not in_fn:
                module_level[module].add(target)
            if in_fn:
                fn_imports += 1
                facade_fn_imports += layer(module) == LAYERS.index("facade")
            if layer(target) > layer(module):
                up.append((module, target))
    lines = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in files.items()}
    per_layer: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for m in files:
        per_layer[LAYERS[layer(m)]][0] += 1
        per_layer[LAYERS[layer(m)]][1] += lines[m]
    loops = strongly_connected(graph)
    print(f"modules: {len(files)}  lines: {sum(lines.values())}")
    for name in LAYERS:
        n, ln = per_layer[name]
        print(f"  layer {name:8s} modules {n:4d}  lines {ln:6d}")
    print(f"import edges: {sum(len(v) for v in graph.values())} "
          f"(module level: {sum(len(v) for v in module_level.values())})")
    print(f"import loops (strongly connected groups, all imports): {len(loops)} "
          f"covering {sum(len(c) for c in loops)} modules")
    print(f"import loops (module-level imports only): {len(strongly_connected(module_level))}")
    print(f"imports running up a layer: {len(up)} "
          f"(distinct pairs {len(set(up))})")
    for a, b in sorted(set(up))[:12]:
        print(f"    {a} -> {b}")
    print(f"function-level imports of package modules: {fn_imports} "
          f"(in the facade: {facade_fn_imports})")
    print(f"explicit Any: {sum(explicit_any(p) for p in files.values())} "
          f"({1000 * sum(explicit_any(p) for p in files.values()) / sum(lines.values()):.1f} "
          "per 1,000 lines)")


def walk() -> None:
    """Trace one small ``pluralign sweep`` from the command-line entry."""
    files = package_files()
    by_file = {str(p.resolve()): m for m, p in files.items()}
    pairs: set[tuple[str, str, str, str]] = set()
    entered: set[str] = set()

    def module_of(code_file: str) -> str | None:
        return by_file.get(str(Path(code_file).resolve())) if code_file.endswith(".py") else None

    cache: dict[str, str | None] = {}

    def profile(frame, event, arg):  # type: ignore[no-untyped-def]
        if event != "call":
            return
        f = frame.f_code.co_filename
        callee = cache[f] if f in cache else cache.setdefault(f, module_of(f))
        if callee is None:
            return
        back = frame.f_back
        while back is not None:
            bf = back.f_code.co_filename
            caller = cache[bf] if bf in cache else cache.setdefault(bf, module_of(bf))
            if caller is not None:
                break
            back = back.f_back
        # Calls the sweep makes, not code a module runs while it is imported (registries,
        # decorators): whether an import happens up front or inside a call is not the walk.
        if "<module>" in (frame.f_code.co_name, getattr(back, "f_code", frame.f_code).co_name):
            return
        entered.add(callee)
        if back is not None and caller != callee:
            pairs.add((caller, back.f_code.co_name, callee, frame.f_code.co_name))

    sys.path.insert(0, str(ROOT))
    from pluralign.jobs.cli import main as cli_main

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["sweep", "--benchmark", "synthetic:S=60,R=3,seed=1", "--scorer", "ridge",
                "--targets", "all", "--cache", os.path.join(tmp, "cache"),
                "--out", os.path.join(tmp, "out")]
        devnull = open(os.devnull, "w")  # noqa: SIM115
        saved = sys.stdout
        sys.stdout = devnull
        sys.setprofile(profile)
        try:
            rc = cli_main(argv)
        finally:
            sys.setprofile(None)
            sys.stdout = saved
            devnull.close()
    climbs = [p for p in pairs if layer(p[2]) > layer(p[0])]
    print(f"walk of `pluralign {' '.join(argv[:5])} ...` (exit {rc}): "
          f"modules entered {len(entered)}, moves between modules {len(pairs)}, "
          f"climbs back up {len(climbs)}")
    for c in sorted(climbs)[:10]:
        print(f"    {c[0]}.{c[1]} -> {c[2]}.{c[3]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--walk", action="store_true", help="also trace a tiny sweep")
    args = parser.parse_args()
    static_figures()
    if args.walk:
        walk()


if __name__ == "__main__":
    main()
