"""``pluralign pareto RUN...``: the Pareto front of systems across sweep runs and their
trade-off steerability (the pluralism roadmap, Sorensen et al. 2024, §4.1–4.2).

Each run folder is a ``pluralign sweep`` output (``summary.json``, ``per_target.parquet``).
Every target of a sweep is a commensurating function f, the run's model steered to it is M_f,
and f(M_f) is the run's metric on that target (accuracy or weighted score, in [0, 1]). The
steerability score is Σ_f f(M_f) over the targets all runs share, each counted once; the front is taken over those
targets (``--by target``) or over the target sets' means (``--by set``).
"""

from __future__ import annotations

import argparse

from pluralign.jobs.cli.flags import add_config_flags, config_from_args, field_docs
from pluralign.jobs.pareto import ParetoConfig, run_pareto
from pluralign.jobs.runtime import progress


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("pareto", help="Pareto front and trade-off steerability across sweep runs",
                       description=__doc__)
    p.add_argument("runs", nargs="+", metavar="RUN", help=field_docs(ParetoConfig)["runs"])
    add_config_flags(p, ParetoConfig, skip=("runs",), required=("out",))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(ParetoConfig, args)
    result = run_pareto(config)
    print(f"\n{len(result.runs)} runs, {result.shared_targets} shared targets (each once), metric "
          f"{config.metric}, front by {config.by} ({len(result.objective_names)} objectives)")
    print(f"{'run':<48}{'front':>6}{'steerability':>14}{'mean f(M_f)':>13}")
    for r in result.runs:
        print(f"{r.name[:47]:<48}{'yes' if r.on_front else 'no':>6}{r.steerability:>14.3f}"
              f"{r.mean:>13.4f}")
    progress(f"wrote {result.out}/summary.json and pareto.parquet")
    return 0
