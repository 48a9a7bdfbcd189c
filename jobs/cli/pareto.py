"""``pluralign pareto RUN...``: the Pareto front of systems across sweep runs and their
trade-off steerability (the pluralism roadmap, Sorensen et al. 2024, §4.1–4.2).

Each run folder is a ``pluralign sweep`` output (``summary.json``, ``per_target.parquet``).
Every target of a sweep is a commensurating function f, the run's model steered to it is M_f,
and f(M_f) is the run's metric on that target (accuracy or weighted score, in [0, 1]). The
steerability score is Σ_f f(M_f) over the targets all runs share; the front is taken over those
targets (``--by target``) or over the target sets' means (``--by set``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pluralign.jobs.runtime import progress, write_json_atomic, write_parquet_atomic


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("pareto", help="Pareto front and trade-off steerability across sweep runs",
                       description=__doc__)
    p.add_argument("runs", nargs="+", metavar="RUN", help="sweep output folders")
    p.add_argument("--metric", choices=("accuracy", "weighted_score"), default="accuracy",
                   help="per-target figure f(M_f) (default accuracy)")
    p.add_argument("--by", choices=("target", "set"), default="target",
                   help="objectives of the front: each shared target, or each set's mean")
    p.add_argument("--out", required=True, help="folder for summary.json and pareto.parquet")
    p.set_defaults(func=run)


def read_run(path: Path, metric: str) -> tuple[str, dict[tuple[str, str], float]]:
    """(scorer identity, {(set, target JSON): metric / 100}) of one sweep folder."""
    import pyarrow.parquet as pq

    from pluralign.engine.errors import InputError
    from pluralign.engine.store.files import read_json

    summary, table = path / "summary.json", path / "per_target.parquet"
    for f in (summary, table):
        if not f.is_file():
            raise InputError("not a sweep output folder (no summary.json and "
                             "per_target.parquet)", file=f, hint="run pluralign sweep --out")
    ident = str(read_json(summary).get("scorer", path.name))
    values = {}
    for i, r in enumerate(pq.read_table(table).to_pylist()):
        if metric not in r:
            raise InputError("missing column", file=table, record=i, field=metric)
        if r[metric] is not None:
            values[(str(r["set"]), str(r["target"]))] = float(r[metric]) / 100.0
    return ident, values


def objectives(runs: list[dict[tuple[str, str], float]], by: str) -> tuple[list[str], np.ndarray]:
    """Objective names and the (runs × objectives) table over what every run has."""
    from pluralign.engine.errors import InputError

    shared = sorted(set.intersection(*(set(r) for r in runs)))
    if not shared:
        raise InputError("the runs share no target with a defined figure", field="runs",
                         hint="sweep the same benchmark and target sets")
    if by == "target":
        return [f"{s}:{t}" for s, t in shared], np.array([[r[k] for k in shared] for r in runs])
    sets = sorted({s for s, _ in shared})
    table = [[float(np.mean([r[k] for k in shared if k[0] == s])) for s in sets] for r in runs]
    return sets, np.array(table)


def steerability(run: dict[tuple[str, str], float], keys: list[tuple[str, str]]) -> float:
    """Σ_f f(M_f) over ``keys`` (each target one commensurating function)."""
    return float(sum(run[k] for k in keys))


def run(args: argparse.Namespace) -> int:
    from pluralign.engine.pluralism.pareto import pareto_front
    from pluralign.engine.store.files import check_output

    check_output(args.out)
    names, runs = [], []
    for r in args.runs:
        ident, values = read_run(Path(r), args.metric)
        names.append(f"{Path(r).name} ({ident})")
        runs.append(values)
    cols, table = objectives(runs, args.by)
    front = pareto_front(table)
    shared = sorted(set.intersection(*(set(r) for r in runs)))
    scores = [steerability(r, shared) for r in runs]
    print(f"\n{len(runs)} runs, {len(shared)} shared targets, metric {args.metric}, front by "
          f"{args.by} ({len(cols)} objectives)")
    print(f"{'run':<48}{'front':>6}{'steerability':>14}{'mean f(M_f)':>13}")
    rows = []
    for i, n in enumerate(names):
        mean = scores[i] / len(shared)
        print(f"{n[:47]:<48}{'yes' if front[i] else 'no':>6}{scores[i]:>14.3f}{mean:>13.4f}")
        rows.append({"run": args.runs[i], "name": n, "on_front": bool(front[i]),
                     "steerability": scores[i], "mean": mean,
                     "objectives": [float(x) for x in table[i]]})
    from pluralign.engine.align.results import rows_table

    out = Path(args.out)
    write_parquet_atomic(out / "pareto.parquet", rows_table(rows, "pareto"))
    write_json_atomic(out / "summary.json", {"metric": args.metric, "by": args.by,
                                             "shared_targets": len(shared),
                                             "objective_names": cols, "runs": rows})
    progress(f"wrote {out}/summary.json and pareto.parquet")
    return 0
