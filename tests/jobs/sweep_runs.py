"""Real sweep folders for the compare, decisions, view and report tests: small synthetic
benchmarks swept through the job into a cache under the test's tmp path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pluralign.engine.store.files import read_json
from pluralign.engine.store.manifest import begin, end
from pluralign.jobs.configs import SplitConfig
from pluralign.jobs.sweep import SweepConfig, run_sweep

SPEC = "synthetic:S=24,R=2-3,A=3,L=5,seed=3"
"""A small benchmark: 24 scenarios of 2-3 responses, 3 attributes on 5 levels."""


def sweep(tmp: Path, name: str, scorer: str, *, spec: str = SPEC, limit: int | None = None,
          targets: tuple[str, ...] = ("all", "sampled", "high", "low")) -> Path:
    """Sweep ``spec`` with ``scorer`` into ``tmp/name`` (cache ``tmp/cache``), with the
    manifest the command line writes; returns the run folder."""
    out = tmp / name
    argv = ["pluralign", "sweep", "--benchmark", spec, "--scorer", scorer, "--out", str(out),
            "--cache", str(tmp / "cache"), *(["--limit", str(limit)] if limit else [])]
    begin("sweep", argv)
    try:
        run_sweep(SweepConfig(out=str(out), scorer=scorer, targets=targets,
                              splits=SplitConfig(benchmark=spec, cache=str(tmp / "cache"),
                                                 limit=limit)))
    finally:
        end()
    return out


def summary(run: Path) -> dict[str, Any]:
    data = read_json(run / "summary.json")
    assert isinstance(data, dict)
    return data
