"""``pluralign align``: answer a re-alignment query from the score cache alone.

No model is called and nothing is scored: the scores must already be cached (by ``sweep``).
Prints accuracy per target and the chosen response per scenario; ``--out`` writes them all.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.jobs.common import add_llm_scorer_args, add_scorer_args, add_target_args


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("align", help="re-align targets from cached scores (no model calls)",
                       description=__doc__)
    add_scorer_args(p, "scorer whose cached scores to use (as given to sweep)", cached=True)
    add_target_args(p, None)
    p.add_argument("--target", action="append", default=[], metavar="JSON",
                   help="an inline target (repeatable)")
    p.add_argument("--show", type=int, default=10, help="chosen responses to print per target")
    from pluralign.jobs.sharded import add_realign_args

    add_realign_args(p)
    p.add_argument("--out", default=None,
                   help="write per-scenario choices (.parquet) or everything (.json)")
    add_llm_scorer_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pluralign.engine.align.realign import chosen_responses
    from pluralign.engine.errors import InputError
    from pluralign.engine.store.files import check_output
    from pluralign.jobs.common import cached_scores_args, finite_or_none, resolve_target_sets
    from pluralign.jobs.sharded import realign_for_args

    if args.out is not None:
        check_output(args.out, folder=False)
    specs = list(args.targets or []) + list(args.target)
    if not specs:
        raise InputError("no targets given", field="targets",
                         hint="pass --target '{\"helpfulness\": 1}' or --targets FILE|all|...")
    scores = cached_scores_args(args)  # nothing is scored: a clear error when absent
    bench, preds, ident = scores.bench, scores.predictions, scores.identity
    results: list[dict[str, Any]] = []
    choice_rows: dict[str, list[Any]] = {"target": [], "scenario": [], "chosen": []}
    for ts in resolve_target_sets(specs, bench, args.data):
        res = realign_for_args(args, bench, preds, ts, weighted=True)
        chosen = chosen_responses(bench, preds, ts) if len(ts) <= 5000 else None
        for t in range(len(ts)):
            text = ts.json(t)
            acc = finite_or_none(float(res.accuracy[t]))
            results.append({"set": ts.name, "target": text, "accuracy": acc,
                            "counted": int(res.counted[t]), "correct": int(res.correct[t])})
            acc_text = "undefined" if acc is None else f"{acc:.1f}"
            print(f"{text}  accuracy {acc_text}  ({res.correct[t]}/{res.counted[t]})")
            if chosen is not None:
                _show(bench, chosen[:, t], args.show)
                choice_rows["target"] += [text] * bench.n_scenarios
                choice_rows["scenario"] += [s.id for s in bench.scenarios]
                choice_rows["chosen"] += chosen[:, t].tolist()
    if args.out:
        _write(Path(args.out), bench, ident, results, choice_rows)
    return 0


def _show(bench: Any, chosen: np.ndarray, n: int) -> None:
    for s in range(min(n, bench.n_scenarios)):
        print(f"    {bench.scenarios[s].id}: response {int(chosen[s])}")
    if bench.n_scenarios > n:
        print(f"    ... {bench.n_scenarios - n} more scenarios")


JSON_LIMIT = 50_000_000
"""Estimated JSON bytes above which the per-scenario choices go to a Parquet file instead."""


def _write(out: Path, bench: Any, ident: str, results: list[Any], rows: dict[str, Any]) -> None:
    from pluralign.jobs.common import progress, write_json_atomic, write_parquet_atomic

    if out.suffix == ".json":
        head: dict[str, Any] = {"benchmark": bench.identity, "scorer": ident, "targets": results}
        size = sum(len(t) + 30 for t in rows["target"]) + 40 * len(rows["scenario"])
        if size > JSON_LIMIT:
            import pyarrow as pa

            side = out.with_suffix(".chosen.parquet")
            progress(f"warning: the choices would make about {size / 1e6:.0f} MB of JSON; "
                     f"writing them to {side} (Parquet) instead")
            write_parquet_atomic(side, pa.table(rows))
            head["chosen_file"] = side.name
        else:
            head["chosen"] = rows
        write_json_atomic(out, head)
    else:
        import pyarrow as pa

        write_parquet_atomic(out, pa.table(rows))
    progress(f"wrote {out}")
