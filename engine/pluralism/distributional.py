"""Distributional pluralism (Sorensen et al., "A Roadmap to Pluralistic Alignment", §3.3, App. B):
how close a model's answer distribution is to a population's, per multiple-choice question, by
Jensen–Shannon distance and entropy.

The shuffled-label control permutes the model's probabilities across the options (same
entropy, scrambled meaning) to show how much of the closeness is entropy alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
from scipy.special import rel_entr

from pluralign.engine.data.id_lists import parse_id_list
from pluralign.engine.errors import InputError
from pluralign.engine.store.files import read_json

_PROB_TOL = 1e-6
"""How far from 1 given probabilities may sum (they are then renormalised)."""


def js_distance(p: np.ndarray, q: np.ndarray, base: float = 2.0) -> np.ndarray:
    """Jensen–Shannon distance along the last axis, as ``scipy.spatial.distance.jensenshannon``
    (inputs are normalised to sum 1; base 2 bounds it in [0, 1])."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    q = q / q.sum(axis=-1, keepdims=True)
    m = (p + q) / 2.0
    # Where m underflows to 0 beside a subnormal p or q, the term is ~1e-323, not infinite
    # (scipy returns inf there).
    safe = m > 0
    left = np.where(safe, rel_entr(p, np.where(safe, m, 1.0)), 0.0)
    right = np.where(safe, rel_entr(q, np.where(safe, m, 1.0)), 0.0)
    js = (left.sum(axis=-1) + right.sum(axis=-1)) / 2.0
    # Rounding can leave a tiny negative divergence for identical inputs: that is 0.
    return np.asarray(np.sqrt(np.maximum(js, 0.0) / math.log(base)))


def entropy(p: np.ndarray, base: float = 2.0) -> np.ndarray:
    """Shannon entropy along the last axis (normalised first; 0·log 0 = 0), in bits by default."""
    p = np.asarray(p, dtype=np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return np.asarray(terms.sum(axis=-1) / math.log(base))


def shuffled_js(model: np.ndarray, population: np.ndarray, rng: np.random.Generator,
                n_shuffles: int = 100, base: float = 2.0) -> float:
    """Mean JS distance between the population and the model's probabilities randomly
    permuted across options (the control of the pluralism roadmap's App. B; a permutation keeps entropy)."""
    perms = np.argsort(rng.random((n_shuffles, model.size)), axis=1)
    return float(js_distance(model[perms], np.broadcast_to(population, perms.shape), base).mean())


@dataclass(frozen=True)
class Question:
    """One multiple-choice question with answer distributions."""

    id: str
    """Question identifier, unique in the file."""
    text: str
    """The question."""
    options: tuple[str, ...]
    """Answer options (at least 2)."""
    groups: Mapping[str, np.ndarray]
    """Population name -> probabilities over ``options``."""
    models: Mapping[str, np.ndarray]
    """Model name -> probabilities over ``options``."""


def load_distributions(path: str | os.PathLike[str]) -> list[Question]:
    """Read and validate a distribution file (format in docs/juries.md)."""
    p = Path(path)
    data = read_json(p)
    return parse_distributions(data, str(p))


def parse_distributions(data: object, source: str = "distributions") -> list[Question]:
    """Validate parsed JSON: ``{"questions": [{id, question, options, groups, models}]}``."""
    return parse_id_list(data, "questions", "question", _parse_question, source)


def _parse_question(q: object, i: int, source: str) -> Question:
    rec = f"questions[{i}]"
    if not isinstance(q, dict):
        raise InputError("a question must be an object", file=source, record=rec)
    qid = q.get("id", str(i))
    if not isinstance(qid, str) or not qid:
        raise InputError("'id' must be a non-empty string", file=source, record=rec, field="id")
    rec = f"questions[{i}] ({qid!r})"
    extra = set(q) - {"id", "question", "options", "groups", "models"}
    if extra:
        raise InputError(f"unknown key(s) {sorted(extra)}", file=source, record=rec,
                         field=sorted(extra)[0])
    options = q.get("options")
    if not isinstance(options, list) or len(options) < 2 \
            or not all(isinstance(o, str) for o in options) or len(set(options)) != len(options):
        raise InputError("'options' must list at least 2 distinct strings", file=source,
                         record=rec, field="options")
    text = q.get("question", "")
    if not isinstance(text, str):
        raise InputError("'question' must be a string", file=source, record=rec,
                         field="question")
    groups = _parse_block(q.get("groups"), len(options), source, rec, "groups", required=True)
    models = _parse_block(q.get("models", {}), len(options), source, rec, "models",
                          required=False)
    return Question(qid, text, tuple(options), groups, models)


def _parse_block(block: object, n: int, source: str, rec: str, field: str,
                 required: bool) -> dict[str, np.ndarray]:
    if block is None or (required and block == {}):
        raise InputError(f"'{field}' needs at least one distribution", file=source, record=rec,
                         field=field)
    if not isinstance(block, dict):
        raise InputError(f"'{field}' must be an object name -> distribution", file=source,
                         record=rec, field=field)
    return {name: _parse_dist(d, n, source, rec, f"{field}.{name}") for name, d in block.items()}


def _parse_dist(d: object, n: int, source: str, rec: str, field: str) -> np.ndarray:
    if not isinstance(d, dict) or len(set(d) & {"counts", "probabilities"}) != 1 or len(d) != 1:
        raise InputError("give exactly one of 'counts' or 'probabilities'", file=source,
                         record=rec, field=field)
    kind, values = next(iter(d.items()))
    where = f"{field}.{kind}"
    if not isinstance(values, list) or len(values) != n:
        raise InputError(f"needs {n} numbers, one per option", file=source, record=rec,
                         field=where)
    for j, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or v < 0:
            raise InputError(f"entry {j} ({v!r}) must be a finite number >= 0", file=source,
                             record=rec, field=where)
        if kind == "counts" and float(v) != int(v):
            raise InputError(f"entry {j} ({v!r}) must be a whole count", file=source,
                             record=rec, field=where, hint="or give 'probabilities'")
    arr = np.asarray(values, dtype=np.float64)
    total = float(arr.sum())
    if total <= 0:
        raise InputError("all zero: no answers", file=source, record=rec, field=where)
    if kind == "probabilities" and abs(total - 1.0) > _PROB_TOL:
        raise InputError(f"probabilities sum to {total:.6g}, not 1", file=source, record=rec,
                         field=where, hint="give 'counts' to have them normalised")
    return arr / total


class _Figures(TypedDict):
    js_distance: float
    js_shuffled: float
    model_entropy: float
    group_entropy: float


class PairRow(_Figures):
    """One (model, group): the figures averaged over the questions that have both."""

    model: str
    group: str
    n_questions: int


_FIGURES: tuple[Literal["js_distance", "js_shuffled", "model_entropy", "group_entropy"], ...] = (
    "js_distance", "js_shuffled", "model_entropy", "group_entropy")


@dataclass(frozen=True)
class DistributionReport:
    """Per (model, group) averages over the questions that have both, and per-question rows."""

    pairs: list[PairRow]
    """model, group, n_questions, js_distance, js_shuffled, model_entropy, group_entropy."""
    questions: list[dict[str, Any]]
    """question, model, group, js_distance, js_shuffled, model_entropy, group_entropy."""


def evaluate_distributions(questions: Sequence[Question], n_shuffles: int = 100,
                           seed: int = 0, base: float = 2.0) -> DistributionReport:
    """JS distance (base 2), entropies and the shuffled control for every model and group."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for q in questions:
        for m, pm in q.models.items():
            for g, pg in q.groups.items():
                rows.append({
                    "question": q.id, "model": m, "group": g,
                    "js_distance": float(js_distance(pm, pg, base)),
                    "js_shuffled": shuffled_js(pm, pg, rng, n_shuffles, base),
                    "model_entropy": float(entropy(pm, base)),
                    "group_entropy": float(entropy(pg, base)),
                })
    keys = sorted({(r["model"], r["group"]) for r in rows})
    pairs: list[PairRow] = []
    for m, g in keys:
        sel = [r for r in rows if r["model"] == m and r["group"] == g]
        pair: PairRow = {"model": m, "group": g, "n_questions": len(sel), "js_distance": 0.0,
                         "js_shuffled": 0.0, "model_entropy": 0.0, "group_entropy": 0.0}
        for col in _FIGURES:
            pair[col] = float(np.mean([r[col] for r in sel]))
        pairs.append(pair)
    return DistributionReport(pairs, rows)
