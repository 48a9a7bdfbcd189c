"""Runs for the viewer tests: a ridge and an oracle sweep of HelpSteer2's first 100 eval
scenarios when the published data is at hand, else two sweeps of a synthetic benchmark."""

from __future__ import annotations

import os
from pathlib import Path

from pluralign.engine.store.manifest import begin, end
from pluralign.jobs.configs import SplitConfig
from pluralign.jobs.sweep import SweepConfig, run_sweep
from tests.jobs.sweep_runs import sweep


def helpsteer2_available() -> bool:
    data = os.environ.get("PLURALIGN_DATA")
    return bool(data) and (Path(str(data)) / "helpsteer2" / "train.json").is_file()


def viewer_runs(tmp: Path) -> list[Path]:
    """Two comparable sweep folders, scored into ``tmp/cache``."""
    if not helpsteer2_available():
        return [sweep(tmp, "random", "random"), sweep(tmp, "oracle", "oracle")]
    out = []
    for scorer in ("ridge", "oracle"):
        run = tmp / f"hs2-{scorer}"
        argv = ["pluralign", "sweep", "--scorer", scorer, "--limit", "100", "--out", str(run),
                "--cache", str(tmp / "cache")]
        begin("sweep", argv)
        try:
            run_sweep(SweepConfig(out=str(run), scorer=scorer, splits=SplitConfig(
                cache=str(tmp / "cache"), limit=100)))
        finally:
            end()
        out.append(run)
    return out
