"""The layer rules of the package, checked on its source: imports point one way (schemas <-
engine <- actors <- jobs <- the facade), the command line is the top of jobs, nothing imports
the facade, there is no import loop, and no function-level import dodges one."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.import_graph import LAYERS, imports, layer, package_files, strongly_connected

FILES = package_files()
KNOWN = set(FILES)
EDGES = [(m, t, in_fn) for m, p in FILES.items() for t, in_fn in imports(m, p, KNOWN)]


def test_the_graph_sees_the_package() -> None:
    """A check that reads nothing passes nothing: the walk finds every layer and the imports
    the command line is known to make."""
    assert {LAYERS[layer(m)] for m in FILES} == set(LAYERS)
    assert ("pluralign.jobs.cli.sweep", "pluralign.jobs.cli.args", False) in EDGES


@pytest.mark.parametrize("lower", LAYERS[:-1])
def test_no_layer_imports_a_higher_one(lower: str) -> None:
    up = sorted({(m, t) for m, t, _ in EDGES
                 if LAYERS[layer(m)] == lower and layer(t) > layer(m)})
    assert up == [], f"{lower} imports a higher layer: {up}"


def test_nothing_imports_the_facade() -> None:
    facade = {m for m in FILES if LAYERS[layer(m)] == "facade"}
    assert sorted({(m, t) for m, t, _ in EDGES if t in facade and m not in facade}) == []


ENTRY_POINTS = {"pluralign.jobs.submit"}
"""Run the command line as a program: ``python -m pluralign.jobs.submit`` is the Ray job
entry point."""


def test_only_the_command_line_imports_the_command_line() -> None:
    cli = "pluralign.jobs.cli"
    inside = {m for m in FILES if m == cli or m.startswith(cli + ".")} | ENTRY_POINTS
    above = {m for m in FILES if LAYERS[layer(m)] == "facade"}
    assert sorted({(m, t) for m, t, _ in EDGES
                   if t in inside and m not in inside | above}) == []


def test_no_import_loops() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for m, t, _ in EDGES:
        graph[m].add(t)
    assert strongly_connected(graph) == []


def test_no_function_level_import_dodges_a_loop() -> None:
    """A function-level import is for a heavy optional package or a quick ``--help``; if the
    imported module reaches back to the importer through module-level imports, the import is
    hiding a loop."""
    module_level: dict[str, set[str]] = defaultdict(set)
    for m, t, in_fn in EDGES:
        if not in_fn:
            module_level[m].add(t)

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(module_level[m])
        return False

    dodging = sorted({(m, t) for m, t, in_fn in EDGES if in_fn and reaches(t, m)})
    assert dodging == []


def test_the_facade_imports_nothing_at_function_level() -> None:
    facade = {m for m in FILES if LAYERS[layer(m)] == "facade"}
    assert sorted({(m, t) for m, t, in_fn in EDGES if m in facade and in_fn}) == []
