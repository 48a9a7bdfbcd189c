"""Juries of real annotators (the pluralism roadmap, Sorensen et al. 2024, §4.3): jurors are
annotator ids with their own ratings of responses, utilities are those ratings rescaled to
[0, 1], and the welfare functions of ``engine/pluralism/welfare.py`` combine them: per scenario for
welfare-optimal selection, and over jurors' mean utilities for a system's choices; groups come
from a demographic field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np

from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.welfare import alpha_name, threshold_share, welfare_many

TIE = 1e-12
"""Welfare values within this of the best count as tied (the lowest response index wins)."""


@dataclass(frozen=True)
class Rating:
    """One annotator's rating of one response."""

    annotator: str
    scenario: str
    response: str
    value: float


@dataclass
class Ratings:
    """Every rating, on one scale, with optional demographics per annotator."""

    ratings: list[Rating]
    """The ratings (one per annotator, scenario and response)."""
    scale: tuple[float, float]
    """(lowest, highest) rating: utilities are (value − lowest) / (highest − lowest)."""
    demographics: dict[str, dict[str, str]] = field(default_factory=dict)
    """Annotator id -> field -> value."""
    source: str = "ratings"
    """Where they were read from (for errors)."""
    each_response: bool = False
    """False: a scenario's welfare-optimal response is chosen over the jurors who rated every
    response of it. True: each response's welfare is taken over the jurors who rated it (for
    pooled layouts such as PRISM's models, where nobody rates every candidate)."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Reason -> records the loader skipped for it."""
    notes: list[str] = field(default_factory=list)
    """How the loader resolved what the layout left open (repeat votes, duplicates)."""

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise InputError(f"scale {self.scale} needs finite lowest < highest",
                             file=self.source, field="scale")
        seen: set[tuple[str, str, str]] = set()
        for i, r in enumerate(self.ratings):
            if not (isinstance(r.value, (int, float)) and lo <= r.value <= hi):
                raise InputError(f"rating {r.value!r} outside the scale {lo:g}..{hi:g}",
                                 file=self.source, record=i, field="rating")
            key = (r.annotator, r.scenario, r.response)
            if key in seen:
                raise InputError(f"annotator {r.annotator!r} rated response {r.response!r} of "
                                 f"scenario {r.scenario!r} twice", file=self.source, record=i,
                                 field="rating")
            seen.add(key)


@dataclass(frozen=True)
class Tables:
    """Ratings as arrays: per scenario a (its jurors × responses) utility table, NaN = not
    rated. Each table holds only the jurors who rated the scenario, so a layout with many
    jurors and many scenarios (Community Alignment) stays small."""

    jurors: tuple[str, ...]
    scenarios: tuple[str, ...]
    responses: tuple[tuple[str, ...], ...]
    """Response ids per scenario, in first-seen order."""
    members: tuple[np.ndarray, ...]
    """int64 indices into ``jurors`` per scenario: the rows of its table."""
    utility: tuple[np.ndarray, ...]
    """float64 (len(members[s]), R_s) per scenario."""


def tables(r: Ratings) -> Tables:
    lo, hi = r.scale
    jurors = tuple(dict.fromkeys(x.annotator for x in r.ratings))
    jidx = {j: k for k, j in enumerate(jurors)}
    scen: dict[str, dict[str, int]] = {}
    rows: dict[str, dict[int, int]] = {}
    for x in r.ratings:
        scen.setdefault(x.scenario, {}).setdefault(x.response, len(scen[x.scenario]))
        rows.setdefault(x.scenario, {}).setdefault(jidx[x.annotator], len(rows[x.scenario]))
    util = {s: np.full((len(rows[s]), len(resp)), np.nan) for s, resp in scen.items()}
    for x in r.ratings:
        row = rows[x.scenario][jidx[x.annotator]]
        util[x.scenario][row, scen[x.scenario][x.response]] = (x.value - lo) / (hi - lo)
    names = tuple(scen)
    return Tables(jurors, names, tuple(tuple(scen[s]) for s in names),
                  tuple(np.fromiter(rows[s], dtype=np.int64, count=len(rows[s])) for s in names),
                  tuple(util[s] for s in names))


def groups(r: Ratings, jurors: Sequence[str], by: str | None) -> dict[str, np.ndarray]:
    """Group name -> bool mask over ``jurors``: ``ALL`` and, with ``by``, one group per value of
    that demographic field (annotators without it form ``by=?``)."""
    out = {"ALL": np.ones(len(jurors), dtype=bool)}
    if by is None:
        return out
    if not any(by in d for d in r.demographics.values()):
        fields = sorted({f for d in r.demographics.values() for f in d})
        raise InputError(f"no annotator has the demographic field {by!r}", file=r.source,
                         field="group_by", hint=f"fields: {', '.join(fields) or 'none given'}")
    values = [r.demographics.get(j, {}).get(by, "?") for j in jurors]
    for v in sorted(set(values)):
        out[f"{by}={v}"] = np.array([x == v for x in values])
    return out


def select(util: np.ndarray, alphas: Sequence[float],
           each_response: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """Welfare-optimal response of one scenario for each α over the jurors who rated every
    response (``each_response``: each response's welfare over the jurors who rated it):
    (chosen index per α, welfare of each response per α (K, R), juror count).
    Chosen is -1 when no juror rated every response (rated any, with ``each_response``)."""
    if each_response:
        return _select_each(util, alphas)
    complete = ~np.isnan(util).any(axis=1)
    n = int(complete.sum())
    if n == 0:
        return np.full(len(alphas), -1), np.full((len(alphas), util.shape[1]), np.nan), 0
    w = welfare_many(util[complete].T, alphas)  # (K, R): jurors on the last axis
    best = np.nanmax(w, axis=1, keepdims=True)
    chosen = np.argmax(w >= best - TIE, axis=1)
    return chosen, w, n


def select_many(utils: Sequence[np.ndarray], alphas: Sequence[float],
                each_response: bool = False) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """:func:`select` of every table in ``utils``, the same answers; tables with the same
    number of complete jurors and responses go to the welfare functions together (one call
    per shape rather than per scenario: Community Alignment has tens of thousands)."""
    if each_response:
        return [select(u, alphas, True) for u in utils]
    out: list[tuple[np.ndarray, np.ndarray, int]] = [
        (np.full(len(alphas), -1), np.full((len(alphas), u.shape[1]), np.nan), 0) for u in utils]
    buckets: dict[tuple[int, int], list[int]] = {}
    complete = []
    for i, u in enumerate(utils):
        full = u[~np.isnan(u).any(axis=1)]
        complete.append(full)
        if len(full):
            buckets.setdefault(full.shape, []).append(i)
    for (n, _), idx in buckets.items():
        stack = np.stack([complete[i].T for i in idx])  # (S, R, n): jurors on the last axis
        w = welfare_many(stack, alphas)  # (K, S, R)
        best = np.nanmax(w, axis=2, keepdims=True)
        chosen = np.argmax(w >= best - TIE, axis=2)  # (K, S)
        for k, i in enumerate(idx):
            out[i] = (chosen[:, k], w[:, k, :], n)
    return out


def _select_each(util: np.ndarray, alphas: Sequence[float]) -> tuple[np.ndarray, np.ndarray, int]:
    rated = ~np.isnan(util)
    n = int(rated.any(axis=1).sum())
    w = np.full((len(alphas), util.shape[1]), np.nan)
    for r in range(util.shape[1]):
        if rated[:, r].any():
            w[:, r] = welfare_many(util[rated[:, r], r], alphas)
    if n == 0:
        return np.full(len(alphas), -1), w, 0
    best = np.nanmax(w, axis=1, keepdims=True)
    chosen = np.argmax(np.nan_to_num(w, nan=-np.inf) >= best - TIE, axis=1)
    return chosen, w, n


def check_usable(r: Ratings) -> Ratings:
    """``r`` when a jury can form from it; else an error naming the source and what is missing
    (no ratings, or no scenario with two responses and a juror who rated them all, or, for
    per-response layouts, any juror)."""
    if not r.ratings:
        raise InputError("no ratings", file=r.source, hint=_skips(r))
    responses: dict[str, set[str]] = {}
    rated: dict[tuple[str, str], int] = {}
    for x in r.ratings:
        responses.setdefault(x.scenario, set()).add(x.response)
        rated[(x.scenario, x.annotator)] = rated.get((x.scenario, x.annotator), 0) + 1
    if r.each_response:
        ok = any(len(v) >= 2 for v in responses.values())
    else:  # a juror who rated every response of a scenario with two or more
        ok = any(n >= 2 and n == len(responses[s]) for (s, _), n in rated.items())
    if not ok:
        what = ("two responses rated" if r.each_response
                else "two responses and a juror who rated every response of it")
        raise InputError(f"no complete scenario: none has {what}", file=r.source,
                         hint=f"{len(responses)} scenarios, "
                         f"{len({a for _, a in rated})} annotators; " + _skips(r))
    return r


def _skips(r: Ratings) -> str:
    return "skipped: " + (", ".join(f"{n} {why}" for why, n in r.skipped.items()) or "none")


class AnnotatorReport(TypedDict):
    """What :func:`evaluate` answers."""

    groups: list[dict[str, object]]
    """Per group: size, welfare-optimal selection per α and (with choices) the system's."""
    selection: list[dict[str, object]]
    """Per group, scenario and α: the welfare-optimal response."""
    scenarios: int
    shared_scenarios: int
    """Scenarios rated by two or more jurors (the rest have a one-person jury)."""
    jurors: int
    ratings: int


def evaluate(r: Ratings, alphas: Sequence[float], group_by: str | None = None,
             choices: Mapping[str, str] | None = None, tau: float = 0.5) -> AnnotatorReport:
    """Per group: the welfare-optimal response of every scenario for each α (and the share of
    scenarios whose optimum differs from the utilitarian one); with ``choices`` (scenario ->
    chosen response id) the system's picks. Both are scored the same way: each juror's mean
    utility over the picks they rated, then w_α (and the share above ``tau``) over the
    jurors, so ``optimal_welfare_a{α}`` and ``system_welfare_a{α}`` compare directly."""
    t = tables(r)
    masks = groups(r, t.jurors, group_by)
    rows: list[dict[str, object]] = []
    picks: list[dict[str, object]] = []
    for g, mask in masks.items():
        row: dict[str, object] = {"group": g, "jurors": int(mask.sum())}
        row.update(_selection(t, mask, alphas, g, picks, r.each_response))
        if choices is not None:
            row.update(_system(t, mask, alphas, choices, tau))
        rows.append(row)
    return {"groups": rows, "selection": picks, "scenarios": len(t.scenarios),
            "shared_scenarios": sum(len(m) >= 2 for m in t.members),
            "jurors": len(t.jurors), "ratings": len(r.ratings)}


def _selection(t: Tables, mask: np.ndarray, alphas: Sequence[float], group: str,
               picks: list[dict[str, object]], each_response: bool) -> dict[str, object]:
    chosen_by_alpha: list[dict[str, str]] = [{} for _ in alphas]
    differs = [0] * len(alphas)
    counted = 0
    utilitarian = list(alphas).index(0.0) if 0.0 in alphas else None
    subs = [util[mask[t.members[s]]] for s, util in enumerate(t.utility)]
    for s, (chosen, w, n) in enumerate(select_many(subs, alphas, each_response)):
        if n == 0:
            continue
        counted += 1
        for k, a in enumerate(alphas):
            chosen_by_alpha[k][t.scenarios[s]] = t.responses[s][chosen[k]]
            if utilitarian is not None and chosen[k] != chosen[utilitarian]:
                differs[k] += 1
            picks.append({"group": group, "scenario": t.scenarios[s], "alpha": alpha_name(a),
                          "response": t.responses[s][chosen[k]], "welfare": float(w[k, chosen[k]]),
                          "jurors": n})
    out: dict[str, object] = {"scenarios_selected": counted}
    for k, a in enumerate(alphas):
        name = alpha_name(a)
        u = juror_utilities(t, chosen_by_alpha[k])[mask]
        u = u[~np.isnan(u)]
        out[f"optimal_welfare_a{name}"] = float(welfare_many(u, [a])[0]) if u.size else None
        if utilitarian is not None:
            out[f"differs_from_utilitarian_a{name}"] = differs[k] / counted if counted else None
    return out


def juror_utilities(t: Tables, choices: Mapping[str, str]) -> np.ndarray:
    """float64 (J,): each juror's mean utility of the chosen responses they rated; NaN for a
    juror who rated none of them."""
    total = np.zeros(len(t.jurors))
    count = np.zeros(len(t.jurors))
    for s, util in enumerate(t.utility):
        pick = choices.get(t.scenarios[s])
        if pick is None or pick not in t.responses[s]:
            continue
        col = util[:, t.responses[s].index(pick)]
        seen = ~np.isnan(col)
        total[t.members[s][seen]] += col[seen]  # a juror is in a scenario's rows once
        count[t.members[s][seen]] += 1
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)


def _system(t: Tables, mask: np.ndarray, alphas: Sequence[float], choices: Mapping[str, str],
            tau: float) -> dict[str, object]:
    u = juror_utilities(t, choices)[mask]
    u = u[~np.isnan(u)]
    out: dict[str, object] = {"jurors_served": int(u.size)}
    w = welfare_many(u, alphas) if u.size else np.full(len(alphas), np.nan)
    for k, a in enumerate(alphas):
        out[f"system_welfare_a{alpha_name(a)}"] = float(w[k]) if u.size else None
    out["system_share_above_tau"] = float(threshold_share(u, tau)) if u.size else None
    return out
