"""A plain-loop oracle of the SPICA metrics, straight from the records (for property tests).

It shares no code with :mod:`pluralign.engine.spica.group_metrics`: it walks scenarios, raters
and classes one at a time, exactly as Chen et al., "SPICA: Retrieving Scenarios for Pluralistic
In-Context Alignment" (§3.1.1-3.2.3) define them.
"""

from __future__ import annotations

import math

from pluralign.engine.spica.bank import ALL, RatingKind
from pluralign.schemas.spica import BankScenario, RaterRecord


def _value(r: RaterRecord, cls: str, kind: RatingKind) -> float | None:
    cr = r.ratings.get(cls)
    if cr is None:
        return None
    v = cr.response if kind == "response" else cr.strategy
    return None if v is None else float(v)


def _members(s: BankScenario, group: str) -> list[RaterRecord]:
    return [r for r in s.raters if group == ALL or group in r.groups]


def _avg(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def consensus_loop(
    s: BankScenario, classes: tuple[str, ...], group: str, kind: RatingKind
) -> dict[str, float]:
    """Class -> mean rating by the group's raters (NaN if nobody rated it)."""
    out = {}
    for c in classes:
        vals = [v for r in _members(s, group) if (v := _value(r, c, kind)) is not None]
        out[c] = _avg(vals)
    return out


def g_stability_loop(
    s: BankScenario, classes: tuple[str, ...], group: str, kind: RatingKind
) -> float:
    """Eqs. 2-3: mean over rated classes of minus the within-group variance."""
    cons = consensus_loop(s, classes, group, kind)
    per_class = []
    for c in classes:
        vals = [v for r in _members(s, group) if (v := _value(r, c, kind)) is not None]
        if vals:
            per_class.append(-sum((v - cons[c]) ** 2 for v in vals) / len(vals))
    return _avg(per_class)


def g_contrast_loop(
    s: BankScenario, classes: tuple[str, ...], group: str, kind: RatingKind
) -> float:
    """Eqs. 4-5 with each rater's own mean over the classes they rated."""
    per_rater = []
    for r in _members(s, group):
        vals = [v for c in classes if (v := _value(r, c, kind)) is not None]
        if not vals:
            continue
        own = sum(vals) / len(vals)
        per_rater.append(sum((v - own) ** 2 for v in vals) / len(vals))
    return _avg(per_rater)


def mismatch_loop(a: dict[str, float], b: dict[str, float]) -> float:
    """Eq. 1 over the classes both sides rated; NaN if none."""
    terms = [(a[c] - b[c]) ** 2 for c in a
             if c in b and not math.isnan(a[c]) and not math.isnan(b[c])]
    return math.sqrt(sum(terms)) if terms else math.nan


def pairwise_mismatch_loop(
    q: BankScenario, x: BankScenario, classes: tuple[str, ...], group: str, kind: RatingKind
) -> float:
    """Mean L over every pair (rater of ``q``, rater of ``x``) in the group."""
    Ls = []
    for rq in _members(q, group):
        a = {c: v for c in classes if (v := _value(rq, c, kind)) is not None}
        for rx in _members(x, group):
            b = {c: v for c in classes if (v := _value(rx, c, kind)) is not None}
            L = mismatch_loop(a, b)
            if not math.isnan(L):
                Ls.append(L)
    return _avg(Ls)
