"""``pluralign spica``: scenario banks, group-informed retrieval and in-context alignment.

Verbs: ``synth`` (write a synthetic bank with planted norms), ``fit`` (per-group weights on the
dev split), ``retrieve``, ``prompt``, ``evaluate`` (SPICA vs similarity retrieval error per
group, with intervals) and ``generate`` (response-class answers for raw prompts, or aligned
outputs, through an OpenAI-compatible backend with a content-addressed cache).
Banks: a Parquet file of ours, ``synthetic[:seed]``, or the SPICA authors' JSON layout via
``--spica-annotations``/``--spica-scenarios``. Formats: docs/spica.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import TextIO

from pluralign.engine.spica.retrieval import Weights
from pluralign.jobs.cli.flags import add_config_flags, config_from_args, field_docs
from pluralign.jobs.spica import (
    SpicaEvaluateConfig,
    SpicaFitConfig,
    SpicaGenerateConfig,
    SpicaPromptConfig,
    SpicaRetrieveConfig,
    SpicaSynthConfig,
    run_spica_evaluate,
    run_spica_fit,
    run_spica_generate,
    run_spica_prompt,
    run_spica_retrieve,
    run_spica_synth,
)

BANK_FILES = ("spica_annotations", "spica_scenarios")
"""The authors' layout files: several after one flag."""
SYNTH_RENAME = {"n_train": "--train", "n_dev": "--dev", "n_test": "--test"}
Cell = str | int | float


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("spica", help="SPICA scenario banks, retrieval and alignment prompts",
                       description=__doc__)
    verbs = p.add_subparsers(dest="spica_verb", metavar="VERB", required=True)

    s = verbs.add_parser("synth", help="write a synthetic bank with planted group norms")
    add_config_flags(s, SpicaSynthConfig, rename=SYNTH_RENAME, required=("out",))
    s.set_defaults(func=run_synth)

    f = verbs.add_parser("fit", help="fit per-group weights on the dev split")
    add_config_flags(f, SpicaFitConfig, nargs=BANK_FILES, required=("out",))
    f.set_defaults(func=run_fit)

    r = verbs.add_parser("retrieve", help="top-k bank scenarios for queries, SPICA and baseline")
    add_config_flags(r, SpicaRetrieveConfig, nargs=BANK_FILES, required=("group",))
    r.set_defaults(func=run_retrieve)

    q = verbs.add_parser("prompt", help="print the alignment prompt of a query for a group")
    add_config_flags(q, SpicaPromptConfig, nargs=BANK_FILES, required=("group",))
    q.set_defaults(func=run_prompt)

    e = verbs.add_parser("evaluate", help="retrieval error per group: SPICA vs similarity")
    add_config_flags(e, SpicaEvaluateConfig, nargs=BANK_FILES)
    e.set_defaults(func=run_evaluate)

    g = verbs.add_parser("generate", help="generate class responses or aligned outputs")
    g.add_argument("what", choices=("classes", "aligned"),
                   help=field_docs(SpicaGenerateConfig)["what"])
    add_config_flags(g, SpicaGenerateConfig, skip=("what",), nargs=BANK_FILES,
                     required=("model", "out"))
    g.set_defaults(func=run_generate)


# -- tables -------------------------------------------------------------------------------
def print_table(headers: list[str], rows: Sequence[Sequence[Cell]],
                out: TextIO | None = None) -> None:
    """Left-aligned text table on stdout."""
    stream = out or sys.stdout
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), file=stream)
    print("  ".join("-" * w for w in widths), file=stream)
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)), file=stream)


def _fmt(v: Cell) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def _weight_rows(weights: dict[str, Weights]) -> list[list[Cell]]:
    return [[g, w.w_d, w.w_s, w.w_c, w.c, w.n_pairs, w.r2] for g, w in weights.items()]


# -- verbs --------------------------------------------------------------------------------
def run_synth(args: argparse.Namespace) -> int:
    config = config_from_args(SpicaSynthConfig, args, SYNTH_RENAME)
    bank = run_spica_synth(config).bank
    print(f"wrote {bank.n_scenarios} scenarios ({', '.join(bank.splits)}), groups "
          f"{', '.join(bank.groups)} to {config.out}")
    return 0


def run_fit(args: argparse.Namespace) -> int:
    result = run_spica_fit(config_from_args(SpicaFitConfig, args))
    print_table(["group", "w_d", "w_s", "w_c", "c", "pairs", "r2"], _weight_rows(result.weights))
    return 0


def run_retrieve(args: argparse.Namespace) -> int:
    result = run_spica_retrieve(config_from_args(SpicaRetrieveConfig, args))
    rows: list[list[Cell]] = []
    for qi, (qid, _) in enumerate(result.queries):
        for rank, sid in enumerate(result.baseline[qi]):
            rows.append([qid, rank + 1, sid,
                         result.spica[qi][rank] if result.spica is not None else "-"])
    w = result.weights
    print(f"group {result.group}: " + ("SPICA weights " + json.dumps(w.to_dict()) if w
                                       else "no weights: baseline only"))
    print_table(["query", "rank", "similarity", "spica"], rows)
    return 0


def run_prompt(args: argparse.Namespace) -> int:
    result = run_spica_prompt(config_from_args(SpicaPromptConfig, args))
    for qid, setup, p in result.prompts:
        print(f"===== query {qid} | group {result.group} | setup {setup} =====")
        for m in p.messages:
            print(f"--- {m.role} ---\n{m.content}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    config = config_from_args(SpicaEvaluateConfig, args)
    result = run_spica_evaluate(config)
    rows: list[list[Cell]] = [
        [e.group, e.n_queries, str(e.baseline), str(e.spica), str(e.gain), e.weights.w_d,
         e.weights.w_s, e.weights.w_c] for e in result.groups]
    print(f"retrieval error (mean pairwise L over top-{config.k}; 95% bootstrap intervals)")
    print_table(["group", "queries", "similarity", "spica", "gain", "w_d", "w_s", "w_c"], rows)
    return 0


def run_generate(args: argparse.Namespace) -> int:
    config = config_from_args(SpicaGenerateConfig, args)
    result = run_spica_generate(config)
    if result.outputs is not None:
        per: dict[tuple[str, str], list[int]] = {}
        for r in result.outputs:
            per.setdefault((r.group, r.setup), [0, 0])[0 if r.text is not None else 1] += 1
        print_table(["group", "setup", "ok", "failed"],
                    [[g, s, v[0], v[1]] for (g, s), v in per.items()])
    report = result.report
    print(f"sent {report.sent} requests, {report.cached} answers from cache, "
          f"{report.duplicates} duplicates, {report.failed} failed; wrote {config.out}")
    return 0
