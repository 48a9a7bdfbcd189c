"""Loaders of annotators' ratings in the field's published layouts: PRISM, Community
Alignment, PERSONA, DICES and per-annotator label sets, and pluralign's own ratings layout.

Each yields :class:`Ratings` a jury can be formed from, or stops with one line saying why not;
records a loader cannot use are skipped and counted in ``Ratings.skipped``, and how it resolved
what a layout leaves open (repeat votes, duplicate candidates) is written in ``Ratings.notes``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pluralign.engine.data.field_files import (
    count,
    csv_rows,
    find_files,
    header,
    need_columns,
    read_jsonl,
    require,
    table_columns,
    table_rows,
)
from pluralign.engine.errors import InputError
from pluralign.engine.jsontypes import UntrustedJSON
from pluralign.engine.pluralism.annotators import Rating, Ratings, check_usable
from pluralign.engine.store.hashing import digest, text_digest

# ---- PRISM -----------------------------------------------------------------------------------

PRISM_SCENARIO = "prism:turn-0-models"
"""The one scenario of PRISM's model-level analysis: the models of opening turns."""


def load_prism(folder: str | os.PathLike[str], balanced_only: bool = True) -> Ratings:
    """PRISM (Kirk et al. 2024, "The PRISM Alignment Dataset") as its authors' welfare analysis
    reads it (``notebooks/analysis/11b_welfare_analysis.ipynb``): ``utterances.jsonl`` rows of
    the opening turn (``turn`` 0; with ``balanced_only`` those ``included_in_balanced_subset``),
    pooled across users into one scenario whose candidates are the models (``model_name``'s
    last ``/`` part); a user's rating of a model is the mean of their ``score`` (1–100) for it,
    repeats averaged. Each model's welfare is over the users who rated it (nobody rates all
    21). Demographics come from ``survey.jsonl``, nested fields as ``location_reside_country``
    (the authors' names)."""
    d = require(folder, "prism")
    utt = find_files(d, ("utterances.jsonl",), "prism")[0]
    scores: dict[tuple[str, str], list[float]] = {}
    skipped: dict[str, int] = {}
    for line, row in read_jsonl(utt):
        for f in ("user_id", "turn", "model_name", "score"):
            if row.get(f) is None:
                raise InputError("missing", file=utt, record=f"line {line}", field=f)
        if row["turn"] != 0:
            count(skipped, "later-turn rating (the analysis uses turn 0)")
            continue
        if balanced_only and row.get("included_in_balanced_subset") is False:
            count(skipped, "turn-0 rating outside the balanced subset")
            continue
        score = row["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise InputError(f"score {score!r} is not a number", file=utt,
                             record=f"line {line}", field="score")
        model = str(row["model_name"]).rsplit("/", 1)[-1]
        scores.setdefault((str(row["user_id"]), model), []).append(float(score))
    repeats = sum(len(v) - 1 for v in scores.values())
    ratings = [Rating(user, PRISM_SCENARIO, model, sum(v) / len(v))
               for (user, model), v in scores.items()]
    notes = [f"{repeats} repeat ratings of a model by the same user averaged"] if repeats else []
    demo = _prism_survey(d)
    return check_usable(Ratings(ratings, (1.0, 100.0), demo, str(utt), each_response=True,
                                skipped=skipped, notes=notes))


def _prism_survey(d: Path) -> dict[str, dict[str, str]]:
    found = [f for f in d.rglob("survey.jsonl")] if d.is_dir() else []
    demo: dict[str, dict[str, str]] = {}
    for survey in found[:1]:
        for line, row in read_jsonl(survey):
            if row.get("user_id") is None:
                raise InputError("missing", file=survey, record=f"line {line}", field="user_id")
            fields: dict[str, str] = {}
            _flat("", {k: v for k, v in row.items() if k != "user_id"}, fields)
            demo[str(row["user_id"])] = fields
    return demo


def _flat(prefix: str, value: UntrustedJSON, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}_{k}" if prefix else str(k), v, out)
    elif value is not None and not isinstance(value, list):
        out[prefix] = str(value)


# ---- Community Alignment ---------------------------------------------------------------------

CA_TURNS = ("first", "second", "third", "fourth")
CA_LETTERS = ("a", "b", "c", "d")
CA_END_OF_TEXT = "<|end_of_text|>"


def load_community_alignment(path: str | os.PathLike[str]) -> Ratings:
    """Community Alignment's ``community_alignment.csv`` (the repository root): one row per
    (conversation, annotator) with ``annotator_id``, ``annotator_*`` demographics and per turn
    ``<turn>_turn_prompt``, ``<turn>_turn_response_a..d`` and
    ``<turn>_turn_preferred_response`` (``response_<letter>``, or a letter). The preferred
    response has utility 1, the others 0; a scenario is the prompt with its candidate texts
    (a trailing ``<|end_of_text|>`` dropped). Demographics are the ``annotator_*`` columns
    under their own names (``--group-by annotator_country``).
    A turn without a preference is skipped and counted; identical candidate texts are one
    candidate (preferred if either was); an annotator who voted on the same scenario more than
    once gets the share of their votes each candidate won (repeats averaged)."""
    p = require(path, "community-alignment")
    if p.is_dir():
        p = find_files(p, ("community_alignment.csv",), "community-alignment")[0]
    need_columns(p, header(p), ("annotator_id", "first_turn_prompt",
                                "first_turn_preferred_response"))
    votes: dict[tuple[str, str], list[tuple[list[str], str]]] = {}
    demo: dict[str, dict[str, str]] = {}
    skipped: dict[str, int] = {}
    for line, row in csv_rows(p):
        who = row["annotator_id"]
        demo[who] = {k: v for k, v in row.items()
                     if k.startswith("annotator_") and k != "annotator_id" and v}
        for turn in CA_TURNS:
            vote = _ca_turn(row, turn, p, line, skipped)
            if vote is not None:
                scenario, texts, pick = vote
                votes.setdefault((who, scenario), []).append((texts, pick))
    ratings, repeats = [], 0
    for (who, scenario), vs in votes.items():
        repeats += len(vs) - 1
        picks = [pick for _, pick in vs]
        for text in vs[0][0]:
            ratings.append(Rating(who, scenario, text_digest(text, 12),
                                  picks.count(text) / len(vs)))
    notes = [f"{repeats} repeat votes (same annotator, same scenario) averaged"] if repeats else []
    return check_usable(Ratings(ratings, (0.0, 1.0), demo, str(p), skipped=skipped, notes=notes))


def _ca_turn(row: dict[str, str], turn: str, p: Path, line: int,
             skipped: dict[str, int]) -> tuple[str, list[str], str] | None:
    prompt = row.get(f"{turn}_turn_prompt") or ""
    shown = {c: _ca_text(row.get(f"{turn}_turn_response_{c}")) for c in CA_LETTERS}
    shown = {c: t for c, t in shown.items() if t}
    if not prompt or not shown:
        return None  # the conversation ended before this turn
    raw = (row.get(f"{turn}_turn_preferred_response") or "").strip().lower()
    if not raw:
        count(skipped, "turn without a preference")
        return None
    pick = raw.removeprefix("response_").removeprefix("response ")
    if pick not in shown:
        raise InputError(f"preferred response {raw!r} is not one of the shown "
                         f"{sorted(shown)}", file=p, record=f"line {line}",
                         field=f"{turn}_turn_preferred_response")
    texts = list(dict.fromkeys(shown.values()))
    if len(texts) < len(shown):
        count(skipped, "identical candidates collapsed", len(shown) - len(texts))
    if len(texts) < 2:
        count(skipped, "turn whose candidates are all identical")
        return None
    return f"ca-{digest([prompt, sorted(texts)], 12)}", texts, shown[pick]


def _ca_text(text: str | None) -> str:
    # Some responses end with the generating model's end-of-text token: not part of the text.
    return (text or "").replace(CA_END_OF_TEXT, "").strip()


# ---- PERSONA ---------------------------------------------------------------------------------

PERSONA_COLUMNS = ("persona", "instruction", "data", "original")


def load_persona(path: str | os.PathLike[str]) -> Ratings:
    """PERSONA (Castricato et al. 2024, "PERSONA: A Reproducible Testbed for Pluralistic
    Alignment"): parquet under ``data/`` with ``persona`` (the persona's attributes as
    ``key: value`` lines), ``instruction`` (the prompt), ``data`` (the response written for
    that persona: preferred, utility 1) and ``original`` (the response it was revised from:
    utility 0). Each persona has its own pair, so a jury forms only where two personas rated a
    common response text; where none did, this stops with one line saying so (score PERSONA
    per persona, chosen against rejected, rather than as a jury)."""
    p = require(path, "persona")
    files = find_files(p, ("*.parquet", "*.jsonl"), "persona")
    ratings, demo = [], {}
    for f in files:
        missing = [c for c in PERSONA_COLUMNS if c not in table_columns(f)]
        if missing:
            raise InputError(f"missing column(s) {missing}", file=f, field=missing[0])
        for rec, row in table_rows(f):
            for col in PERSONA_COLUMNS:
                if not isinstance(row.get(col), str) or not str(row[col]).strip():
                    raise InputError("missing or empty", file=f, record=rec, field=col)
            text = str(row["persona"])
            who = f"persona-{text_digest(text, 12)}"
            demo[who] = {k.strip(): v.strip() for k, _, v in
                         (ln.partition(":") for ln in text.splitlines()) if v.strip()}
            scenario = f"pe-{text_digest(str(row['instruction']), 12)}"
            ratings.append(Rating(who, scenario, text_digest(str(row["data"]), 12), 1.0))
            ratings.append(Rating(who, scenario, text_digest(str(row["original"]), 12), 0.0))
    _persona_common(ratings, files[0] if len(files) == 1 else p)
    return check_usable(Ratings(ratings, (0.0, 1.0), demo, str(p)))


def _persona_common(ratings: Sequence[Rating], source: Path) -> None:
    raters: dict[tuple[str, str], set[str]] = {}
    for x in ratings:
        raters.setdefault((x.scenario, x.response), set()).add(x.annotator)
    if ratings and max(len(v) for v in raters.values()) < 2:
        people = len({x.annotator for x in ratings})
        prompts = len({x.scenario for x in ratings})
        raise InputError(
            f"PERSONA cannot form a jury: each of its {people} personas rates only its own "
            f"pair (data vs original) on {prompts} prompts, and no response is rated by two "
            "personas", file=source,
            hint="score it per persona, chosen against rejected, not as a jury")


# ---- DICES and label sets --------------------------------------------------------------------

DICES_FILES = ("diverse_safety_adversarial_dialog_*.csv",)
DICES_LABEL = "Q_overall"
"""DICES's aggregate safety rating per (rater, conversation): Yes, No or Unsure (unsafe?)."""


def load_dices(path: str | os.PathLike[str], label: str = DICES_LABEL) -> Ratings:
    """DICES (Aroyo et al. 2023, "DICES Dataset: Diversity in Conversational AI Evaluation for
    Safety"): ``diverse_safety_adversarial_dialog_350.csv`` or ``..._990.csv`` (a file, or the
    repository folder holding one), one row per (rater, conversation): ``rater_id``,
    ``item_id``, the rater's safety answers (``label``, default ``Q_overall``) and every
    ``rater_*`` column as a demographic (the 350 file has ``rater_race``, ``rater_age`` ...;
    the 990 file ``rater_locale``, ``rater_race_raw`` ...). Read as a label set: each
    conversation's responses are its label values."""
    p = require(path, "dices")
    files = find_files(p, DICES_FILES, "dices")
    if len(files) > 1:
        raise InputError(f"{len(files)} DICES files ({', '.join(f.name for f in files)}): "
                         "they are different rater pools", file=p, hint="pass one of them")
    cols = header(files[0])
    demo = [c for c in cols if c.startswith("rater_") and c != "rater_id"]
    return load_label_sets(files[0], item="item_id", annotator="rater_id", label=label,
                           demographics=demo)


def load_label_sets(path: str | os.PathLike[str], *, item: str = "item",
                    annotator: str = "annotator", label: str = "label",
                    demographics: Sequence[str] = ()) -> Ratings:
    """Per-annotator label sets in the style of jury learning (Gordon et al. 2022): a long
    CSV or JSONL, one row per (item, annotator) with the annotator's label and the
    ``demographics`` columns named. Each item is a scenario whose responses are the label
    values seen for it; an annotator's utility is 1 for their own label and 0 for the others,
    so the welfare-optimal response is the jury's verdict. A row with an empty label is
    skipped and counted."""
    p = require(path, "label sets")
    rows = list(read_jsonl(p)) if p.suffix == ".jsonl" else list(csv_rows(p))
    if p.suffix != ".jsonl":
        need_columns(p, header(p), (item, annotator, label, *demographics))
    labels: dict[str, set[str]] = {}
    own: dict[tuple[str, str], str] = {}
    demo: dict[str, dict[str, str]] = {}
    skipped: dict[str, int] = {}
    for i, row in rows:
        for col in (item, annotator):
            if row.get(col) in (None, ""):
                raise InputError("missing", file=p, record=f"line {i}", field=col)
        if row.get(label) in (None, ""):
            count(skipped, f"row without a {label}")
            continue
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
    return check_usable(Ratings(ratings, (0.0, 1.0), demo, str(p), skipped=skipped))


def load_ratings(path: str | os.PathLike[str], scale: tuple[float, float],
                 demographics: str | os.PathLike[str] | None = None) -> Ratings:
    """pluralign's own ratings layout: CSV or JSONL rows ``annotator, scenario, response,
    rating`` on ``scale``; ``demographics`` an optional CSV or JSONL with ``annotator`` and one
    column per field."""
    p = require(path, "ratings")
    rows = list(read_jsonl(p)) if p.suffix == ".jsonl" else list(csv_rows(p))
    if p.suffix != ".jsonl":
        need_columns(p, header(p), ("annotator", "scenario", "response", "rating"))
    ratings = []
    for i, row in rows:
        for col in ("annotator", "scenario", "response", "rating"):
            if row.get(col) in (None, ""):
                raise InputError("missing", file=p, record=f"line {i}", field=col)
        try:
            value = float(str(row["rating"]))
        except (TypeError, ValueError):
            raise InputError(f"rating {row['rating']!r} is not a number", file=p,
                             record=f"line {i}", field="rating") from None
        ratings.append(Rating(str(row["annotator"]), str(row["scenario"]), str(row["response"]),
                              value))
    demo: dict[str, dict[str, str]] = {}
    if demographics is not None:
        d = require(demographics, "demographics")
        drows = list(read_jsonl(d)) if d.suffix == ".jsonl" else list(csv_rows(d))
        for i, row in drows:
            if row.get("annotator") in (None, ""):
                raise InputError("missing", file=d, record=f"line {i}", field="annotator")
            demo[str(row["annotator"])] = {k: str(v) for k, v in row.items()
                                           if k != "annotator" and v not in (None, "")}
    return check_usable(Ratings(ratings, scale, demo, str(p)))
