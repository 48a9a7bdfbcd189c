"""Loaders of the field's survey and Overton datasets in their published layouts:
GlobalOpinionQA and OpinionQA (answer distributions per population), ValuePrism (Overton
windows) and OvertonBench (people's ratings of how well a model's answer represents them).

Records a loader cannot use are skipped and counted (``skipped``: reason -> count); a load
that leaves nothing to compare is an error naming the file and what was missing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pluralign.engine.data.field_files import (
    count,
    csv_rows,
    find_files,
    header,
    literal,
    need_columns,
    require,
    table_columns,
    table_rows,
)
from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.distributional import Question
from pluralign.engine.pluralism.overton import OvertonBenchRatings, OvertonQuery, Perspective
from pluralign.engine.store.hashing import digest


@dataclass(frozen=True)
class SurveyLoad:
    """Questions read from a survey dataset, with what was left out."""

    questions: list[Question]
    """The questions with at least one population's distribution."""
    source: str
    """The file or folder read."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Reason -> records skipped for it."""
    refusal: dict[str, dict[str, float]] = field(default_factory=dict)
    """OpinionQA: question id -> population -> share (weighted) of its answers that were a
    refusal option (``Refused``, ``Not sure`` ...), kept out of the distribution."""


def option_label(x: object) -> str:
    """An option as shown to a model: whole-number floats without ``.0`` (``1`` not ``1.0``)."""
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


# ---- GlobalOpinionQA -------------------------------------------------------------------------

def load_global_opinions(path: str | os.PathLike[str]) -> SurveyLoad:
    """GlobalOpinionQA's ``global_opinions.csv``: columns ``question``, ``selections`` (a Python
    ``defaultdict(<class 'list'>, {country: [share per option]})`` literal), ``options`` (a
    list literal, sometimes of numbers) and ``source``; one population per country. Empty
    questions, countries with malformed shares and questions left with no country are skipped
    and counted."""
    p = require(path, "global-opinions")
    if p.is_dir():
        (p,) = find_files(p, ("global_opinions.csv",), "global-opinions")
    need_columns(p, header(p), ("question", "selections", "options"))
    out: list[Question] = []
    skipped: dict[str, int] = {}
    for line, row in csv_rows(p):
        rec = f"line {line}"
        if not row["question"].strip():
            count(skipped, "empty question")
            continue
        options = literal(row["options"], p, rec, "options")
        if not isinstance(options, list) or len(options) < 2:
            raise InputError("needs a list of at least 2 options", file=p, record=rec,
                             field="options")
        groups = _country_shares(row["selections"], len(options), p, rec, skipped)
        if not groups:
            count(skipped, "question without a well-formed country")
            continue
        labels = [option_label(o) for o in options]
        if len(set(labels)) != len(labels):
            labels = [f"{k}. {o}" for k, o in enumerate(labels)]
        out.append(Question(f"{row.get('source') or 'q'}-{line}", row["question"],
                            tuple(labels), groups, {}))
    if not out:
        raise InputError("no question with a well-formed country distribution", file=p,
                         hint=_skip_text(skipped))
    return SurveyLoad(out, str(p), skipped)


def _country_shares(text: str, n: int, p: Path, rec: str,
                    skipped: dict[str, int]) -> dict[str, np.ndarray]:
    text = text.strip()
    if text.startswith("defaultdict("):
        text = text[text.index(",") + 1: text.rindex(")")]
    selections = literal(text, p, rec, "selections")
    if not isinstance(selections, dict):
        raise InputError("needs {country: [shares]}", file=p, record=rec, field="selections")
    groups = {}
    for country, shares in selections.items():
        try:
            arr = np.asarray(shares, dtype=np.float64) if isinstance(shares, list) else None
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.shape != (n,) or not np.all(np.isfinite(arr)) \
                or (arr < 0).any() or arr.sum() <= 0:
            count(skipped, "country with malformed shares")
            continue
        groups[str(country)] = arr / arr.sum()
    return groups


def _skip_text(skipped: dict[str, int]) -> str:
    return "skipped: " + (", ".join(f"{n} {why}" for why, n in skipped.items()) or "none")


# ---- OpinionQA -------------------------------------------------------------------------------

def load_opinionqa(survey_dir: str | os.PathLike[str], group_by: str | None = None) -> SurveyLoad:
    """One OpinionQA survey folder (``human_resp/American_Trends_Panel_W<n>``) as Santurkar et
    al. (2023, "Whose Opinions Do Language Models Reflect?") read it (their ``helpers.py``):
    ``info.csv`` (``key``, ``question``, ``references`` then ``option_ordinal``: the first
    ``len(option_ordinal)`` references are the answer options, the rest are refusals such as
    ``Refused``), ``responses.csv`` (a column per question key holding the answer text, the
    survey weight exactly ``WEIGHT_W<n>``, demographic columns) and, with ``group_by``,
    ``metadata.csv`` (``key``, ``options``: the group values that form populations; others,
    such as ``Refused``, form none). A population's distribution is the weighted share of
    each option among its substantive answers; its refusal rate is the weighted share of
    refusals among all its answers (kept apart, in ``refusal``)."""
    d = require(survey_dir, "opinionqa")
    waves = sorted(x.name for x in d.glob("American_Trends_Panel_W*") if x.is_dir())
    if waves and not (d / "info.csv").exists():
        raise InputError(f"holds {len(waves)} survey folders, not one survey", file=d,
                         hint=f"pass one of them, e.g. {d / waves[0]}")
    info, resp = require(d / "info.csv", "opinionqa"), require(d / "responses.csv", "opinionqa")
    need_columns(info, header(info), ("key", "question", "references", "option_ordinal"))
    cols = header(resp)
    weight = _weight_column(d, resp, cols)
    values = _group_values(d, group_by) if group_by else None
    if group_by:
        need_columns(resp, cols, (group_by,))
    questions = _opinionqa_questions(info, resp, cols)
    skipped: dict[str, int] = {}
    sums: dict[str, dict[str, np.ndarray]] = {k: {} for k, *_ in questions}
    for line, row in csv_rows(resp):
        w = _weight(row[weight], resp, line, weight)
        if w is None:
            count(skipped, f"respondent with a blank {weight}")
            continue
        pops = ["overall"]
        if group_by and values is not None:
            if row[group_by] in values:
                pops.append(f"{group_by}={row[group_by]}")
            else:
                count(skipped, f"respondent outside the {group_by} groups (counted in overall)")
        for key, _, opts, refusals in questions:
            answer = row.get(key, "")
            if not answer:
                continue  # not asked: no answer at all
            # slots: the options, then refusals, then any other text (in the total only)
            slot = (opts.index(answer) if answer in opts
                    else len(opts) if answer in refusals else len(opts) + 1)
            for g in pops:
                sums[key].setdefault(g, np.zeros(len(opts) + 2))[slot] += w
    return _opinionqa_result(d, questions, sums, skipped, group_by)


def _opinionqa_questions(info: Path, resp: Path,
                         cols: list[str]) -> list[tuple[str, str, list[str], list[str]]]:
    out = []
    for line, row in csv_rows(info):
        rec = f"line {line}"
        refs = literal(row["references"], info, rec, "references")
        ordinal = literal(row["option_ordinal"], info, rec, "option_ordinal")
        if not isinstance(refs, list) or not isinstance(ordinal, list) \
                or not 2 <= len(ordinal) <= len(refs):
            raise InputError("needs `references` (a list) whose first len(option_ordinal) >= 2 "
                             "items are the answer options", file=info, record=rec,
                             field="option_ordinal")
        if row["key"] not in cols:
            raise InputError(f"question {row['key']!r} has no column in responses.csv",
                             file=resp, field=row["key"])
        n = len(ordinal)
        out.append((row["key"], row["question"], [str(r) for r in refs[:n]],
                    [str(r) for r in refs[n:]]))
    return out


def _opinionqa_result(d: Path, questions: list[tuple[str, str, list[str], list[str]]],
                      sums: dict[str, dict[str, np.ndarray]], skipped: dict[str, int],
                      group_by: str | None) -> SurveyLoad:
    out, refusal = [], {}
    for key, text, opts, _ in questions:
        groups, refused = {}, {}
        for g, s in sums[key].items():
            if s[:-2].sum() <= 0:
                continue  # only refusals: no opinion distribution (the authors skip it too)
            groups[g] = s[:-2] / s[:-2].sum()
            refused[g] = float(s[-2] / s.sum())
        if not groups:
            count(skipped, "question without a substantive answer")
            continue
        out.append(Question(key, text, tuple(opts), groups, {}))
        refusal[key] = refused
    if not out:
        raise InputError("no question has a substantive (non-refusal) answer",
                         file=d / "responses.csv", hint=_skip_text(skipped))
    if group_by and not any(len(q.groups) > 1 for q in out):
        raise InputError(f"no respondent is in a {group_by} group of metadata.csv",
                         file=d / "responses.csv", field=group_by)
    return SurveyLoad(out, str(d), skipped, refusal)


def _weight_column(d: Path, resp: Path, cols: list[str]) -> str:
    """``WEIGHT_W<n>`` for the wave in the folder's name (the authors' rule); raw waves also
    carry weights such as ``WEIGHT_W25W26``, which are not this survey's."""
    m = re.search(r"_W(\d+)$", d.resolve().name)
    if m:
        want = f"WEIGHT_W{m.group(1)}"
        need_columns(resp, cols, (want,))
        return want
    exact = [c for c in cols if re.fullmatch(r"WEIGHT_W\d+", c)]
    if len(exact) != 1:
        raise InputError("cannot tell the survey weight: the folder is not named "
                         f"..._W<n> and the weight columns are {exact or 'none'}", file=resp,
                         field="WEIGHT_W<n>", hint="keep the published folder name")
    return exact[0]


def _group_values(d: Path, group_by: str) -> set[str]:
    meta = d / "metadata.csv"
    if not meta.exists():
        raise InputError(f"metadata.csv is needed to group by {group_by!r} (it lists the "
                         "values that form groups)", file=meta)
    need_columns(meta, header(meta), ("key", "options"))
    keys = []
    for line, row in csv_rows(meta):
        keys.append(row["key"])
        if row["key"] == group_by:
            opts = literal(row["options"], meta, f"line {line}", "options")
            if not isinstance(opts, list) or not opts:
                raise InputError("needs a list of group values", file=meta,
                                 record=f"line {line}", field="options")
            return {str(o) for o in opts}
    raise InputError(f"no row for {group_by!r}", file=meta, field="key",
                     hint=f"keys: {', '.join(keys)}")


def _weight(text: str, path: Path, line: int, column: str) -> float | None:
    if not text.strip():
        return None
    try:
        w = float(text)
    except ValueError:
        raise InputError(f"weight {text!r} is not a number", file=path,
                         record=f"line {line}", field=column) from None
    if not w >= 0:
        raise InputError(f"weight {w} must be >= 0", file=path, record=f"line {line}",
                         field=column)
    return w


# ---- ValuePrism ------------------------------------------------------------------------------

VRD = ("Value", "Right", "Duty")


def load_valueprism(path: str | os.PathLike[str]) -> list[OvertonQuery]:
    """ValuePrism's ``full`` CSVs (one file, the ``full`` folder, or the repository holding it):
    columns ``situation``, ``vrd`` (Value, Right or Duty), ``text``, ``explanation``,
    ``valence``. Each situation is a query whose window is its values, rights and duties (the Value Kaleidoscope
    view: every listed consideration is a reasonable one). An entry reads ``Value: Honesty``;
    rights and duties already say so (``Duty to ...``) and are kept as written."""
    p = require(path, "valueprism")
    if p.is_dir() and (p / "full").is_dir():
        p = p / "full"  # the repository's other folders (relevance, valence ...) are tasks
    windows: dict[str, list[Perspective]] = {}
    for f in find_files(p, ("*.csv",), "valueprism"):
        need_columns(f, header(f), ("situation", "vrd", "text"))
        for line, row in csv_rows(f):
            if row["vrd"] not in VRD:
                raise InputError(f"vrd {row['vrd']!r} is not one of {list(VRD)}", file=f,
                                 record=f"line {line}", field="vrd")
            if not row["situation"].strip() or not row["text"].strip():
                raise InputError("empty situation or text", file=f, record=f"line {line}",
                                 field="text" if row["situation"].strip() else "situation")
            win = windows.setdefault(row["situation"], [])
            text = row["text"].strip()
            if not text.lower().startswith(row["vrd"].lower()):
                text = f"{row['vrd']}: {text}"
            if all(x.text != text for x in win):
                win.append(Perspective(f"{row['vrd'][0].lower()}{len(win)}", text))
    return [OvertonQuery(f"vp-{digest(s, 12)}", s, tuple(w)) for s, w in windows.items()]


# ---- OvertonBench ----------------------------------------------------------------------------

OVERTONBENCH_COLUMNS: dict[str, tuple[str, ...]] = {
    "participant": ("participant_id", "user_id", "prolific_id", "worker_id", "pid"),
    "question": ("question", "question_text", "question_id"),
    "model": ("model", "model_name", "llm"),
    "rating": ("representation_rating", "rating", "representation", "likert"),
    "cluster": ("cluster_kmeans",),
}
"""Role -> column names it goes by (the first present is used; ``cluster_kmeans`` is the
card's name for the paper's clusters)."""


def load_overtonbench(path: str | os.PathLike[str],
                      columns: dict[str, str] | None = None) -> OvertonBenchRatings:
    """OvertonBench (Poole-Dayan et al., "Benchmarking Overton Pluralism in LLMs"): parquet
    under ``data/`` (``prolific_with_clusters_kmeans_merged_public.parquet``, and the
    ``prism``/``modelslant`` splits), one row per participant × question × model with the
    participant's 1–5 rating of how well the model's answer represents their view and their
    opinion cluster (``cluster_kmeans``). ``columns`` (role -> column) overrides the names
    looked for. Rows without a rating or cluster are skipped and counted; a folder reads the
    full split only."""
    p = require(path, "overtonbench")
    files = find_files(p, ("*.parquet", "*.jsonl", "*.csv"), "overtonbench")
    full = [f for f in files if f.name.startswith("prolific_")]
    f = full[0] if p.is_dir() and full else files[0]
    if p.is_dir() and not full and len(files) > 1:
        raise InputError(f"{len(files)} candidate files and none is the full split", file=p,
                         hint="pass the file to read")
    have = table_columns(f)
    role = {r: (columns or {}).get(r) or next((c for c in names if c in have), "")
            for r, names in OVERTONBENCH_COLUMNS.items()}
    for r, c in role.items():
        if c not in have:
            raise InputError(f"no {r} column (looked for {list(OVERTONBENCH_COLUMNS[r])}; name "
                             "yours in `overtonbench_columns`)",
                             file=f, field=r, hint=f"its columns: {', '.join(have[:40])}")
    skipped: dict[str, int] = {}
    rows: list[tuple[str, str, str, float, str]] = []
    for rec, row in table_rows(f):
        vals = {r: row.get(c) for r, c in role.items()}
        if any(vals[r] in (None, "") for r in role) or _nan(vals["rating"]) \
                or _nan(vals["cluster"]):
            count(skipped, "row without a rating or cluster")
            continue
        try:
            rating = float(str(vals["rating"]))
        except ValueError:
            raise InputError(f"rating {vals['rating']!r} is not a number", file=f, record=rec,
                             field=role["rating"]) from None
        rows.append((str(vals["participant"]), str(vals["question"]), str(vals["model"]),
                     rating, option_label(vals["cluster"])))
    if not rows:
        raise InputError("no row has a rating and a cluster", file=f, hint=_skip_text(skipped))
    return OvertonBenchRatings(rows, str(f), skipped)


def _nan(x: object) -> bool:
    return isinstance(x, float) and not np.isfinite(x)
