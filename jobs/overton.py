"""The ``overton`` job: Overton pluralism (the pluralism roadmap, Sorensen et al. 2024, §3.1).

For each query, its window of reasonable answers and each system's response: coverage (the
share of the window the response reflects) and precision (the share of the reflected answers
that are in the window, where unreasonable answers are listed), per query and averaged. The
judge of "reflects" is the model-free ``lexical-overlap`` proxy or an LLM entailment judge
through the backends (batched, cached, schema-constrained). Formats: docs/pluralism.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pluralign.engine.align.consistency import majority
from pluralign.engine.align.results import rows_table
from pluralign.engine.data.field_data import (
    OVERTONBENCH_COLUMNS,
    load_overtonbench,
    load_valueprism,
    read_jsonl,
)
from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.judges import OVERTON_BENCHMARK, EntailmentJudge
from pluralign.engine.pluralism.overton import (
    COVERED,
    LEXICAL_NAME,
    OvertonQuery,
    candidates,
    lexical_reflects,
    load_overton,
    overton_scores,
    summarize,
    with_responses,
)
from pluralign.engine.run.scheduler import Dispatcher
from pluralign.engine.store.files import check_output
from pluralign.engine.store.manifest import current, file_record
from pluralign.jobs.configs import LLMConfig
from pluralign.jobs.pluralism_runs import cache_store, run_judge, samples_of, settings
from pluralign.jobs.runtime import write_json_atomic, write_parquet_atomic

__all__ = ["OvertonConfig", "OvertonResult", "load_queries", "run_overton"]

Reflected = dict[tuple[str, str], np.ndarray]
"""(query id, system) -> bool vector over the query's candidates: which the response reflects."""


@dataclass(frozen=True, kw_only=True)
class OvertonConfig:
    """The queries and responses ``pluralign overton`` judges, the judge, and where it writes.
    Exactly one of ``file``, ``valueprism`` and ``overtonbench`` names the queries."""

    file: str | None = None
    """Overton file (JSON: queries, windows, responses)."""
    valueprism: str | None = None
    """ValuePrism CSV (or folder of them): each situation's values, rights and duties form its
    window."""
    overtonbench: str | None = None
    """OvertonBench parquet (or its folder): people's own 1–5 ratings of how well each model's
    answer represents them give each model's coverage of the opinion clusters (a cluster is
    covered when its mean rating is at least 4) and OvertonScore; no judge is run."""
    overtonbench_columns: str | None = None
    """OvertonBench: ROLE=COLUMN pairs, comma-separated, naming the participant, question,
    model, rating or cluster column where the file calls it otherwise."""
    responses: str | None = None
    """Responses to judge, one JSON object a line: query, system, response."""
    judge: Literal["lexical", "llm"] = "lexical"
    """lexical: the model-free lexical-overlap proxy; llm: an LLM entailment judge through the
    backend of the LLM configuration."""
    threshold: float = 0.5
    """lexical: share of a perspective's content words the response must contain."""
    limit: int | None = None
    """Only the first N queries (a limited run shares its cache entries with a full one)."""
    cache: str | None = None
    """Cache folder (default: $PLURALIGN_CACHE, then the user cache dir)."""
    out: str
    """Folder for summary.json and overton.parquet."""


@dataclass(frozen=True)
class OvertonResult:
    """What an Overton run judged and wrote."""

    queries: list[OvertonQuery]
    """The queries judged, with their responses."""
    judge: str
    """``lexical-overlap`` or the LLM judge's cache identity."""
    report: dict[str, Any]
    """:func:`~pluralign.engine.pluralism.overton.summarize`'s ``rows`` (per query and
    system), ``systems`` (averages) and ``missing`` (pairs without a complete judgement)."""
    details: dict[str, Any]
    """The judge's settings as summary.json records them (lexical: the threshold; llm: the
    scheduler's counts, samples and decoded settings)."""
    out: Path
    """The folder written: summary.json (and overton.parquet when any pair was judged)."""


def load_queries(config: OvertonConfig) -> list[OvertonQuery]:
    """The queries of ``config.file`` or ``config.valueprism`` (the first ``limit``), with the
    ``responses`` file's added; refuses a run with nothing to judge."""
    if sum(bool(x) for x in (config.file, config.valueprism, config.overtonbench)) != 1:
        raise InputError("give the queries as exactly one of an Overton file, ValuePrism and "
                         "OvertonBench", field="file",
                         hint="`file=FILE`, `valueprism=PATH` or `overtonbench=PATH`")
    queries = (load_overton(config.file) if config.file
               else load_valueprism(str(config.valueprism)))
    if config.responses:
        queries = with_responses(queries, _read_responses(Path(config.responses), queries))
    if not any(q.responses for q in queries):
        raise InputError("no responses to judge", field="responses",
                         hint="give them in the file or with `responses`")
    if config.limit:
        queries = queries[: config.limit]
    return queries


def _read_responses(path: Path, queries: Sequence[OvertonQuery]) -> dict[str, dict[str, str]]:
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


def run_overton(config: OvertonConfig, llm: LLMConfig | None = None,
                backend: Dispatcher | None = None) -> OvertonResult:
    """Judge every (query, system) response with ``config.judge``; write overton.parquet and
    summary.json under ``config.out``. The LLM judge needs ``llm`` (model, endpoint, sampling)
    and sends only what the choice cache lacks; ``backend`` replaces the pool ``llm`` would
    start (tests)."""
    check_output(config.out)
    if config.overtonbench:
        return _overtonbench(config)
    queries = load_queries(config)
    details: dict[str, Any] = {}
    if config.judge == "lexical":
        reflected = _lexical(queries, config.threshold)
        judge_name = LEXICAL_NAME
        details["threshold"] = config.threshold
    else:
        if llm is None:
            raise InputError("the llm judge needs an LLM configuration", field="model",
                             hint="pass `llm`, an LLMConfig (`model` and the endpoint)")
        reflected, judge_name, details = _llm(queries, llm, config.cache, backend)
    report = summarize(queries, reflected)
    out = Path(config.out)
    if report["rows"]:
        write_parquet_atomic(out / "overton.parquet", rows_table(report["rows"], "overton"))
    write_json_atomic(out / "summary.json", {
        "judge": judge_name, "queries": len(queries), "systems": report["systems"],
        "missing_pairs": report["missing"], **details})
    return OvertonResult(queries, judge_name, report, details, out)


def _lexical(queries: Sequence[OvertonQuery], threshold: float) -> Reflected:
    out = {}
    for q in queries:
        texts = [c.text for c in candidates(q)[0]]
        for system, response in q.responses.items():
            out[(q.id, system)] = lexical_reflects(response, texts, threshold)
    return out


def _llm(queries: Sequence[OvertonQuery], config: LLMConfig, cache: str | None,
         backend: Dispatcher | None) -> tuple[Reflected, str, dict[str, Any]]:
    judge = EntailmentJudge(queries, settings(config))
    samples = samples_of(config)
    schedule = run_judge(judge, judge.items(samples), config, cache, backend)
    votes: dict[tuple[str, str], dict[int, int]] = {}
    for r in cache_store(cache).read(OVERTON_BENCHMARK, judge.identity).to_pylist():
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


def _overtonbench(config: OvertonConfig) -> OvertonResult:
    """OvertonBench's human coverage per (question, model) and OvertonScore per model."""
    if config.file or config.valueprism or config.responses:
        raise InputError("`overtonbench` carries its own questions, answers and ratings",
                         field="overtonbench", hint="drop `file`, `valueprism` and `responses`")
    data = load_overtonbench(str(config.overtonbench), _columns(config.overtonbench_columns))
    rows, models = overton_scores(data)
    m = current()
    if m is not None:
        m.benchmark = {"dataset": "overtonbench", "files": [file_record(data.source)],
                       "rows": len(data.rows), "skipped": data.skipped}
    out = Path(config.out)
    write_parquet_atomic(out / "overton.parquet", rows_table(rows, "overtonbench"))
    people = len({r[0] for r in data.rows})
    summary = {"judge": "human ratings (OvertonBench)", "source": data.source,
               "participants": people, "questions": len({r["question"] for r in rows}),
               "covered_at": COVERED, "systems": models, "skipped": data.skipped}
    write_json_atomic(out / "summary.json", summary)
    report = {"rows": rows, "systems": models, "missing": 0, "participants": people,
              "skipped": data.skipped}
    return OvertonResult([], "human ratings (OvertonBench)", report,
                         {"covered_at": COVERED}, out)


def _columns(text: str | None) -> dict[str, str]:
    out = {}
    for pair in (text or "").split(","):
        if not pair.strip():
            continue
        role, sep, column = pair.partition("=")
        if not sep or role.strip() not in OVERTONBENCH_COLUMNS or not column.strip():
            raise InputError(f"{pair.strip()!r} is not ROLE=COLUMN with a role of "
                             f"{', '.join(OVERTONBENCH_COLUMNS)}", field="overtonbench_columns")
        out[role.strip()] = column.strip()
    return out
