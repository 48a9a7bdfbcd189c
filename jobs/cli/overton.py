"""``pluralign overton``: Overton pluralism (the pluralism roadmap, Sorensen et al. 2024, §3.1).

For each query, its window of reasonable answers and each system's response: coverage (the
share of the window the response reflects) and precision (the share of the reflected answers
that are in the window, where unreasonable answers are listed), per query and averaged. The
judge of "reflects" is the model-free ``lexical-overlap`` proxy (default) or an LLM entailment
judge through the backends (batched, cached, schema-constrained). Formats: docs/pluralism.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.jobs.common import progress, write_json_atomic, write_parquet_atomic


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("overton", help="Overton coverage and precision of responses",
                       description=__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="Overton file (JSON: queries, windows, responses)")
    src.add_argument("--valueprism", metavar="PATH",
                     help="ValuePrism CSV (or folder of them): each situation's values, rights "
                          "and duties form its window")
    p.add_argument("--responses", metavar="JSONL",
                   help="responses to judge, one JSON object a line: query, system, response")
    p.add_argument("--judge", choices=("lexical", "llm"), default="lexical",
                   help="lexical: the model-free lexical-overlap proxy (default); llm: an LLM "
                        "entailment judge through --backend")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="lexical: share of a perspective's content words the response must "
                        "contain (default 0.5)")
    p.add_argument("--cache", default=None, help="cache folder (default: $PLURALIGN_CACHE ...)")
    p.add_argument("--out", required=True, help="folder for summary.json and overton.parquet")
    from pluralign.jobs.pluralism_runs import add_backend_args

    add_backend_args(p)
    p.set_defaults(func=run)


def load_queries(args: argparse.Namespace) -> list[Any]:
    from pluralign.engine.data.field_data import load_valueprism
    from pluralign.engine.errors import InputError
    from pluralign.engine.pluralism.overton import load_overton, with_responses

    queries = load_overton(args.file) if args.file else load_valueprism(args.valueprism)
    if args.responses:
        queries = with_responses(queries, _read_responses(Path(args.responses), queries))
    if not any(q.responses for q in queries):
        raise InputError("no responses to judge", field="responses",
                         hint="give them in the file or with --responses")
    if args.limit:
        queries = queries[: args.limit]
    return queries


def _read_responses(path: Path, queries: list[Any]) -> dict[str, dict[str, str]]:

    from pluralign.engine.data.field_data import read_jsonl
    from pluralign.engine.errors import InputError

    by_text = {q.query: q.id for q in queries}
    ids = {q.id for q in queries}
    out: dict[str, dict[str, str]] = {}
    for i, row in read_jsonl(path):
        for f in ("query", "system", "response"):
            if not isinstance(row.get(f), str) or not row[f]:
                raise InputError("must be a non-empty string", file=path, record=f"line {i}",
                                 field=f)
        qid = row["query"] if row["query"] in ids else by_text.get(row["query"])
        if qid is None:
            raise InputError(f"query {row['query'][:60]!r} is neither a query id nor text",
                             file=path, record=f"line {i}", field="query")
        out.setdefault(qid, {})[row["system"]] = row["response"]
    return out


def run(args: argparse.Namespace, backend: Any = None) -> int:
    from pluralign.engine.align.results import rows_table
    from pluralign.engine.pluralism.overton import summarize
    from pluralign.engine.store.files import check_output

    check_output(args.out)
    queries = load_queries(args)
    extra: dict[str, Any] = {}
    if args.judge == "lexical":
        reflected = _lexical(queries, args.threshold)
        judge_name = "lexical-overlap"
        extra["threshold"] = args.threshold
    else:
        reflected, judge_name, extra = _llm(queries, args, backend)
    report = summarize(queries, reflected)
    _print(report, judge_name)
    out = Path(args.out)
    if report["rows"]:
        write_parquet_atomic(out / "overton.parquet", rows_table(report["rows"], "overton"))
    write_json_atomic(out / "summary.json", {
        "judge": judge_name, "queries": len(queries), "systems": report["systems"],
        "missing_pairs": report["missing"], **extra})
    progress(f"wrote {out}/summary.json")
    return 0


def _lexical(queries: list[Any], threshold: float) -> dict[tuple[str, str], np.ndarray]:
    from pluralign.engine.pluralism.overton import candidates, lexical_reflects

    out = {}
    for q in queries:
        texts = [c.text for c in candidates(q)[0]]
        for system, response in q.responses.items():
            out[(q.id, system)] = lexical_reflects(response, texts, threshold)
    return out


def _llm(queries: list[Any], args: argparse.Namespace,
         backend: Any) -> tuple[dict[tuple[str, str], np.ndarray], str, dict[str, Any]]:
    from pluralign.engine.judges.consistency import majority
    from pluralign.engine.pluralism.judges import OVERTON_BENCHMARK, EntailmentJudge
    from pluralign.engine.pluralism.overton import candidates
    from pluralign.jobs.configs import LLMConfig
    from pluralign.jobs.pluralism_runs import cache_store, run_judge, samples_of, settings

    config = LLMConfig.from_args(args)
    judge = EntailmentJudge(queries, settings(config))
    samples = samples_of(config)
    schedule = run_judge(judge, judge.items(samples), config, args.cache, backend)
    votes: dict[tuple[str, str], dict[int, int]] = {}
    for r in cache_store(args.cache).read(OVERTON_BENCHMARK, judge.identity).to_pylist():
        if r["error"] is None and r["choice"] is not None and r["sample"] < samples:
            votes.setdefault((r["scenario"], r["target"]), {})[r["sample"]] = int(r["choice"])
    out = {}
    for s, (q, system) in enumerate(judge.pairs):
        keys = [judge.target_key(c.id, c.text) for c in candidates(q)[0]]
        picks = [majority(list(votes.get((judge.scenario_key(s), k), {}).values())) for k in keys]
        if all(p is not None for p in picks):
            out[(q.id, system)] = np.array([bool(p) for p in picks])
    return out, judge.identity, {"scoring": schedule.as_dict(), "samples": samples,
                                 "judge_settings": judge.describe()}


def _print(report: dict[str, Any], judge: str) -> None:
    print(f"\nOverton coverage and precision (judge: {judge})")
    print(f"{'system':<24}{'queries':>8}{'coverage':>10}{'precision':>11}")
    for name, s in report["systems"].items():
        prec = "n/a" if s["precision"] is None else f"{s['precision']:.3f}"
        print(f"{name:<24}{s['queries']:>8}{s['coverage']:>10.3f}{prec:>11}")
    if report["missing"]:
        print(f"({report['missing']} (query, system) pairs without a complete judgement)")
