"""Loaders for the field's pluralism datasets in their published file layouts: GlobalOpinionQA
and OpinionQA (survey distributions), ValuePrism / Value Kaleidoscope (Overton windows), PRISM,
Community Alignment and PERSONA (annotators' ratings), and per-annotator label sets.

None of their data ships with pluralign and nothing here downloads: a missing file gets an
error saying where to get it (gated ones need the user to accept their terms first).
"""

from __future__ import annotations

import ast
import csv
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from pluralign.engine.errors import DataNotFoundError, InputError
from pluralign.engine.jsontypes import UntrustedJSON
from pluralign.engine.pluralism.annotators import Rating, Ratings
from pluralign.engine.pluralism.distributional import Question
from pluralign.engine.pluralism.overton import OvertonQuery, Perspective
from pluralign.engine.store.hashing import digest

SOURCES: dict[str, tuple[str, bool]] = {
    "global-opinions": ("https://huggingface.co/datasets/Anthropic/llm_global_opinions "
                        "(data/global_opinions.csv)", False),
    "opinionqa": ("https://github.com/tatsu-lab/opinions_qa (human_resp/<survey>/info.csv "
                  "and responses.csv)", False),
    "valueprism": ("https://huggingface.co/datasets/allenai/ValuePrism (full/*.csv)", True),
    "prism": ("https://huggingface.co/datasets/HannahRoseKirk/prism-alignment (survey.jsonl, "
              "utterances.jsonl)", False),
    "community-alignment": ("https://huggingface.co/datasets/facebook/community-alignment-"
                            "dataset (the CSV under data/)", False),
    "persona": ("https://huggingface.co/datasets/SynthLabsAI/PERSONA (parquet)", True),
}
"""Dataset -> (where to get it, gated)."""


def require(path: str | os.PathLike[str], dataset: str) -> Path:
    """``path`` if it exists, else an error saying where to get ``dataset``."""
    p = Path(path)
    if p.exists():
        return p
    where, gated = SOURCES.get(dataset, ("its publisher", False))
    terms = (" It is gated: accept its terms on that page and download it yourself; pluralign "
             "never fetches it." if gated else " Download it and pass its path.")
    raise DataNotFoundError(f"{dataset}: {p} not found. Get it from {where}.{terms}")


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(newline="", encoding="utf-8") as f:
        yield from enumerate(csv.DictReader(f), start=2)  # line 1 is the header


def _need_columns(path: Path, have: Sequence[str] | None, need: Sequence[str]) -> None:
    missing = [c for c in need if c not in (have or ())]
    if missing:
        raise InputError(f"missing column(s) {missing}", file=path, field=missing[0])


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, UntrustedJSON]]]:
    """(line number, object) for each non-blank line; an error names the file and line."""
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"not JSON ({e.msg})", file=path, record=f"line {i}") from None
            if not isinstance(obj, dict):
                raise InputError("a line must be a JSON object", file=path, record=f"line {i}")
            yield i, obj


def _literal(text: str, path: Path, rec: str, name: str) -> UntrustedJSON:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise InputError(f"cannot read {text[:60]!r}", file=path, record=rec, field=name) from None


# ---- survey distributions ------------------------------------------------------------------

def load_global_opinions(path: str | os.PathLike[str]) -> list[Question]:
    """GlobalOpinionQA's ``global_opinions.csv``: columns ``question``, ``selections`` (a Python
    ``defaultdict(<class 'list'>, {country: [share per option]})`` literal), ``options`` (a
    list literal) and ``source``; one population per country."""
    p = require(path, "global-opinions")
    _need_columns(p, _header(p), ("question", "selections", "options"))
    out = []
    for line, row in _csv_rows(p):
        rec = f"line {line}"
        options = _literal(row["options"], p, rec, "options")
        if not isinstance(options, list) or len(options) < 2:
            raise InputError("needs a list of at least 2 options", file=p, record=rec,
                             field="options")
        text = row["selections"].strip()
        if text.startswith("defaultdict("):
            text = text[text.index(",") + 1: text.rindex(")")]
        selections = _literal(text, p, rec, "selections")
        if not isinstance(selections, dict) or not selections:
            raise InputError("needs {country: [shares]}", file=p, record=rec, field="selections")
        groups = {}
        for country, shares in selections.items():
            arr = np.asarray(shares, dtype=np.float64) if isinstance(shares, list) else None
            if arr is None or arr.shape != (len(options),) or not np.all(np.isfinite(arr)) \
                    or (arr < 0).any() or arr.sum() <= 0:
                raise InputError(f"{country}: needs {len(options)} shares >= 0, one per option",
                                 file=p, record=rec, field="selections")
            groups[str(country)] = arr / arr.sum()
        labels = [str(o) for o in options]
        if len(set(labels)) != len(labels):
            labels = [f"{k}. {o}" for k, o in enumerate(labels)]
        out.append(Question(f"{row.get('source', 'q')}-{line}", row["question"], tuple(labels),
                            groups, {}))
    return out


def load_opinionqa(survey_dir: str | os.PathLike[str], group_by: str | None = None) -> list[Question]:
    """One OpinionQA survey folder (``human_resp/American_Trends_Panel_W<n>``): ``info.csv``
    (``key``, ``question``, ``references``: the options as a list literal) and
    ``responses.csv`` (one row per respondent, a column per question key holding the answer
    text, a ``WEIGHT_W<n>`` survey weight, demographic columns). Populations: ``overall`` and,
    with ``group_by`` (e.g. ``POLPARTY``), one per value. Answers outside the options (refusals)
    are left out; a question nobody answered is skipped."""
    d = require(survey_dir, "opinionqa")
    info, resp = d / "info.csv", d / "responses.csv"
    for f in (info, resp):
        require(f, "opinionqa")
    _need_columns(info, _header(info), ("key", "question", "references"))
    header = _header(resp)
    weight = next((c for c in header if c.upper().startswith("WEIGHT")), None)
    if group_by is not None:
        _need_columns(resp, header, (group_by,))
    questions = []
    for line, row in _csv_rows(info):
        refs = _literal(row["references"], info, f"line {line}", "references")
        if not isinstance(refs, list) or len(refs) < 2:
            raise InputError("needs a list of at least 2 options", file=info,
                             record=f"line {line}", field="references")
        if row["key"] not in header:
            raise InputError(f"question {row['key']!r} has no column in responses.csv",
                             file=resp, field=row["key"])
        questions.append((row["key"], row["question"], [str(r) for r in refs]))
    counts: dict[str, dict[str, np.ndarray]] = {k: {} for k, _, _ in questions}  # key -> group -> weights per option
    for line, row in _csv_rows(resp):
        w = _weight(row, weight, resp, line)
        for key, _, refs in questions:
            answer = row.get(key, "")
            if answer in refs:
                for g in ("overall", *([f"{group_by}={row[group_by]}"] if group_by else [])):
                    counts[key].setdefault(g, np.zeros(len(refs)))[refs.index(answer)] += w
    return [Question(k, text, tuple(refs), {g: c / c.sum() for g, c in counts[k].items()}, {})
            for k, text, refs in questions if counts[k]]


def _weight(row: dict[str, str], column: str | None, path: Path, line: int) -> float:
    if column is None:
        return 1.0
    try:
        w = float(row[column])
    except ValueError:
        raise InputError(f"weight {row[column]!r} is not a number", file=path,
                         record=f"line {line}", field=column) from None
    if not w >= 0:
        raise InputError(f"weight {w} must be >= 0", file=path, record=f"line {line}",
                         field=column)
    return w


# ---- Overton windows ------------------------------------------------------------------------

VRD = ("Value", "Right", "Duty")


def load_valueprism(path: str | os.PathLike[str]) -> list[OvertonQuery]:
    """ValuePrism's ``full`` CSVs (one file or a folder of them): columns ``situation``,
    ``vrd`` (Value, Right or Duty), ``text``, ``explanation``, ``valence``. Each situation is a
    query whose window is its values, rights and duties (the Value Kaleidoscope view: every
    listed consideration is a reasonable one)."""
    p = require(path, "valueprism")
    files = sorted(p.glob("*.csv")) if p.is_dir() else [p]
    if not files:
        raise InputError("no .csv files in the folder", file=p)
    windows: dict[str, list[Perspective]] = {}
    for f in files:
        _need_columns(f, _header(f), ("situation", "vrd", "text"))
        for line, row in _csv_rows(f):
            if row["vrd"] not in VRD:
                raise InputError(f"vrd {row['vrd']!r} is not one of {list(VRD)}", file=f,
                                 record=f"line {line}", field="vrd")
            if not row["situation"].strip() or not row["text"].strip():
                raise InputError("empty situation or text", file=f, record=f"line {line}",
                                 field="text" if row["situation"].strip() else "situation")
            win = windows.setdefault(row["situation"], [])
            text = f"{row['vrd']}: {row['text']}"
            if all(x.text != text for x in win):
                win.append(Perspective(f"{row['vrd'][0].lower()}{len(win)}", text))
    return [OvertonQuery(f"vp-{digest(s, 12)}", s, tuple(w)) for s, w in windows.items()]


# ---- annotators' ratings --------------------------------------------------------------------

def _flat(prefix: str, value: object, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif value is not None and not isinstance(value, list):
        out[prefix] = str(value)


def load_prism(folder: str | os.PathLike[str]) -> Ratings:
    """PRISM: ``utterances.jsonl`` (one row per model response: ``user_id``,
    ``conversation_id``, ``turn``, ``within_turn_id``, ``model_response``, ``score`` 1–100) and
    ``survey.jsonl`` (one row per ``user_id``: demographics, nested fields as ``a.b``). A
    scenario is one turn of one conversation; its responses are that turn's model responses."""
    d = require(folder, "prism")
    utt = require(d / "utterances.jsonl", "prism")
    ratings = []
    for line, row in read_jsonl(utt):
        for f in ("user_id", "conversation_id", "turn", "within_turn_id", "score"):
            if row.get(f) is None:
                raise InputError("missing", file=utt, record=f"line {line}", field=f)
        score = row["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise InputError(f"score {score!r} is not a number", file=utt,
                             record=f"line {line}", field="score")
        ratings.append(Rating(str(row["user_id"]), f"{row['conversation_id']}:{row['turn']}",
                              str(row["within_turn_id"]), float(score)))
    demo: dict[str, dict[str, str]] = {}
    survey = d / "survey.jsonl"
    if survey.exists():
        for line, row in read_jsonl(survey):
            if row.get("user_id") is None:
                raise InputError("missing", file=survey, record=f"line {line}", field="user_id")
            fields: dict[str, str] = {}
            _flat("", {k: v for k, v in row.items() if k != "user_id"}, fields)
            demo[str(row["user_id"])] = fields
    return Ratings(ratings, (1.0, 100.0), demo, str(utt))


CA_TURNS = ("first", "second", "third", "fourth")
CA_LETTERS = ("a", "b", "c", "d")


def load_community_alignment(path: str | os.PathLike[str]) -> Ratings:
    """Community Alignment's CSV: one row per (conversation, annotator) with ``annotator_id``,
    ``annotator_*`` demographics and per turn ``<turn>_turn_prompt``,
    ``<turn>_turn_response_a..d`` and ``<turn>_turn_preferred_response`` (a letter, or
    ``response_<letter>``). The preferred response has utility 1, the others 0. A scenario is
    the prompt with its candidate texts (hashed), so annotators shown the same candidates share
    it."""
    p = require(path, "community-alignment")
    header = _header(p)
    _need_columns(p, header, ("annotator_id", "first_turn_prompt", "first_turn_preferred_response"))
    ratings, demo = [], {}
    for line, row in _csv_rows(p):
        who = row["annotator_id"]
        demo[who] = {k[len("annotator_"):]: v for k, v in row.items()
                     if k.startswith("annotator_") and k != "annotator_id" and v}
        for turn in CA_TURNS:
            prompt = row.get(f"{turn}_turn_prompt") or ""
            texts = {c: row.get(f"{turn}_turn_response_{c}") or "" for c in CA_LETTERS}
            texts = {c: t for c, t in texts.items() if t}
            if not prompt or not texts:
                continue
            raw = (row.get(f"{turn}_turn_preferred_response") or "").strip().lower()
            pick = raw.removeprefix("response_").removeprefix("response ")
            if pick not in texts:
                raise InputError(f"preferred response {raw!r} is not one of the shown "
                                 f"{sorted(texts)}", file=p, record=f"line {line}",
                                 field=f"{turn}_turn_preferred_response")
            scenario = f"ca-{digest([prompt, sorted(texts.values())], 12)}"
            for c, t in texts.items():
                ratings.append(Rating(who, scenario, digest(t, 12), 1.0 if c == pick else 0.0))
    return Ratings(ratings, (0.0, 1.0), demo, str(p))


def _table_rows(p: Path) -> Iterator[tuple[int, dict[str, UntrustedJSON]]]:
    if p.suffix == ".jsonl":
        yield from read_jsonl(p)
        return
    import pyarrow.parquet as pq

    yield from enumerate(pq.read_table(p).to_pylist())


def load_persona(path: str | os.PathLike[str]) -> Ratings:
    """PERSONA (parquet, or JSONL with the same columns): ``persona`` (the persona's attributes
    as ``key: value`` lines), ``instruction`` (the prompt), ``data`` (the response written for
    the persona: preferred, utility 1) and ``original`` (the generic response: utility 0). The
    annotator is the persona (by a hash of its text); demographics are its attribute lines."""
    p = require(path, "persona")
    files = sorted([*p.glob("*.parquet"), *p.glob("*.jsonl")]) if p.is_dir() else [p]
    ratings, demo = [], {}
    for f in files:
        for i, row in _table_rows(f):
            for col in ("persona", "instruction", "data", "original"):
                if not isinstance(row.get(col), str) or not row[col].strip():
                    raise InputError("missing or empty", file=f, record=i, field=col)
            who = f"persona-{digest(row['persona'], 12)}"
            demo[who] = {k.strip(): v.strip() for k, _, v in
                         (ln.partition(":") for ln in row["persona"].splitlines()) if v.strip()}
            scenario = f"pe-{digest(row['instruction'], 12)}"
            ratings.append(Rating(who, scenario, digest(row["data"], 12), 1.0))
            ratings.append(Rating(who, scenario, digest(row["original"], 12), 0.0))
    return Ratings(ratings, (0.0, 1.0), demo, str(p))


def load_label_sets(path: str | os.PathLike[str], *, item: str = "item",
                    annotator: str = "annotator", label: str = "label",
                    demographics: Sequence[str] = ()) -> Ratings:
    """Per-annotator label sets in the style of jury learning (Gordon et al. 2022): a long
    CSV or JSONL, one row per (item, annotator) with the annotator's label and optional
    demographic columns. Each item is a scenario whose responses are the label values seen for
    it; an annotator's utility is 1 for their own label and 0 for the others, so the
    welfare-optimal response is the jury's verdict."""
    p = require(path, "label sets")
    rows = list(read_jsonl(p)) if p.suffix == ".jsonl" else list(_csv_rows(p))
    if p.suffix != ".jsonl":
        _need_columns(p, _header(p), (item, annotator, label, *demographics))
    labels: dict[str, set[str]] = {}
    own: dict[tuple[str, str], str] = {}
    demo: dict[str, dict[str, str]] = {}
    for i, row in rows:
        for col in (item, annotator, label):
            if row.get(col) in (None, ""):
                raise InputError("missing", file=p, record=f"line {i}", field=col)
        key = (str(row[annotator]), str(row[item]))
        if key in own:
            raise InputError(f"annotator {key[0]!r} labelled item {key[1]!r} twice", file=p,
                             record=f"line {i}", field=label)
        own[key] = str(row[label])
        labels.setdefault(key[1], set()).add(str(row[label]))
        demo.setdefault(key[0], {c: str(row[c]) for c in demographics if row.get(c) not in
                                 (None, "")})
    ratings = [Rating(who, it, lab, 1.0 if own[(who, it)] == lab else 0.0)
               for (who, it) in own for lab in sorted(labels[it])]
    return Ratings(ratings, (0.0, 1.0), demo, str(p))


def load_ratings(path: str | os.PathLike[str], scale: tuple[float, float],
                 demographics: str | os.PathLike[str] | None = None) -> Ratings:
    """pluralign's own ratings layout: CSV or JSONL rows ``annotator, scenario, response,
    rating`` on ``scale``; ``demographics`` an optional CSV or JSONL with ``annotator`` and one
    column per field."""
    p = require(path, "ratings")
    rows = list(read_jsonl(p)) if p.suffix == ".jsonl" else list(_csv_rows(p))
    if p.suffix != ".jsonl":
        _need_columns(p, _header(p), ("annotator", "scenario", "response", "rating"))
    ratings = []
    for i, row in rows:
        for col in ("annotator", "scenario", "response", "rating"):
            if row.get(col) in (None, ""):
                raise InputError("missing", file=p, record=f"line {i}", field=col)
        try:
            value = float(row["rating"])
        except (TypeError, ValueError):
            raise InputError(f"rating {row['rating']!r} is not a number", file=p,
                             record=f"line {i}", field="rating") from None
        ratings.append(Rating(str(row["annotator"]), str(row["scenario"]), str(row["response"]),
                              value))
    demo: dict[str, dict[str, str]] = {}
    if demographics is not None:
        d = require(demographics, "demographics")
        drows = list(read_jsonl(d)) if d.suffix == ".jsonl" else list(_csv_rows(d))
        for i, row in drows:
            if row.get("annotator") in (None, ""):
                raise InputError("missing", file=d, record=f"line {i}", field="annotator")
            demo[str(row["annotator"])] = {k: str(v) for k, v in row.items()
                                           if k != "annotator" and v not in (None, "")}
    return Ratings(ratings, scale, demo, str(p))
