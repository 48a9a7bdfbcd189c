"""Scenario banks in memory: validated records plus the dense rating tensors metrics need.

Build one with :func:`make_bank`; every malformed rating is reported with its scenario, group,
rater and field. Group ``ALL`` is reserved for the collective group (every rater).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from pluralign.engine.errors import InputError
from pluralign.engine.store.hashing import Hasher
from pluralign.schemas.spica import BankMeta, BankScenario, ClassRating, RaterRecord, ResponseClass

ALL = "ALL"
"""Name of the collective group: every rater of the bank, whatever their groups."""

RatingKind = Literal["response", "strategy"]
RATING_KINDS: tuple[RatingKind, ...] = ("response", "strategy")


@dataclass(frozen=True, eq=False)
class ScenarioBank:
    """A validated scenario bank. Arrays index scenarios in ``scenarios`` order."""

    meta: BankMeta
    """Name, response classes and rating scale."""
    scenarios: tuple[BankScenario, ...]
    """The scenarios, in file order."""
    source: str = ""
    """Where it was loaded from (for error messages)."""

    @property
    def n_scenarios(self) -> int:
        return len(self.scenarios)

    @cached_property
    def classes(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.meta.classes)

    @cached_property
    def strategies(self) -> dict[str, str]:
        return {c.name: c.strategy for c in self.meta.classes}

    @cached_property
    def ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.scenarios)

    @cached_property
    def prompts(self) -> tuple[str, ...]:
        return tuple(s.prompt for s in self.scenarios)

    @cached_property
    def splits(self) -> tuple[str, ...]:
        return tuple(sorted({s.split for s in self.scenarios}))

    @cached_property
    def groups(self) -> tuple[str, ...]:
        """Every group named by a rater, sorted (``ALL`` not included)."""
        return tuple(sorted({g for s in self.scenarios for r in s.raters for g in r.groups}))

    def index_of(self, scenario_id: str) -> int:
        try:
            return self._index[scenario_id]
        except KeyError:
            raise InputError(f"no scenario {scenario_id!r} in bank {self.meta.name!r}",
                             field="scenario") from None

    @cached_property
    def _index(self) -> dict[str, int]:
        return {s.id: i for i, s in enumerate(self.scenarios)}

    def select(self, split: str) -> ScenarioBank:
        """The scenarios of one split, as a bank of their own."""
        chosen = tuple(s for s in self.scenarios if s.split == split)
        if not chosen:
            raise InputError(
                f"bank {self.meta.name!r} has no scenario in split {split!r}",
                file=self.source or None, field="split",
                hint=f"splits present: {', '.join(self.splits) or 'none'}",
            )
        return ScenarioBank(self.meta, chosen, self.source)

    def check_group(self, group: str) -> str:
        if group != ALL and group not in self.groups:
            raise InputError(
                f"unknown group {group!r}", file=self.source or None, field="group",
                hint=f"groups: {', '.join((*self.groups, ALL))}",
            )
        return group

    def ratings(self, group: str, kind: RatingKind = "response") -> np.ndarray:
        """float64 (S, M, K): ratings by the group's raters; NaN where absent.

        Slot m of scenario s is the m-th rater of the group listed in that scenario (slots are
        not people: raters differ between scenarios). ``M`` is the most raters any scenario has.
        """
        self.check_group(group)
        key = (group, kind)
        cache = self._tensors
        if key not in cache:
            cache[key] = _rating_tensor(self, group, kind)
        return cache[key]

    @cached_property
    def _tensors(self) -> dict[tuple[str, str], np.ndarray]:
        return {}

    def rated_index(self, group: str) -> np.ndarray:
        """int64 (S, M, K): index of the response text each rater saw; -1 where unknown."""
        self.check_group(group)
        return _rated_tensor(self, group)

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 (16 hex) of every field that changes metrics, retrieval or prompts."""
        h = Hasher(self.meta.to_json())
        for s in self.scenarios:
            h.update(json.dumps(_scenario_json(s), sort_keys=True))
        return h.hexdigest(16)

    @property
    def identity(self) -> str:
        return f"{self.meta.name}@{self.content_hash}"


def _scenario_json(s: BankScenario) -> dict[str, object]:
    return {
        "id": s.id, "prompt": s.prompt, "split": s.split,
        "responses": {k: list(v) for k, v in s.responses.items()},
        "raters": [
            [r.rater, list(r.groups),
             {c: [v.response, v.strategy, v.rated_response] for c, v in sorted(r.ratings.items())}]
            for r in s.raters
        ],
    }


def _members(bank: ScenarioBank, group: str, s: BankScenario) -> list[RaterRecord]:
    return [r for r in s.raters if group == ALL or group in r.groups]


def _rating_tensor(bank: ScenarioBank, group: str, kind: RatingKind) -> np.ndarray:
    per = [_members(bank, group, s) for s in bank.scenarios]
    m = max((len(p) for p in per), default=0)
    k = len(bank.classes)
    out = np.full((bank.n_scenarios, max(m, 1), k), np.nan, dtype=np.float64)
    for si, raters in enumerate(per):
        for mi, r in enumerate(raters):
            for ci, c in enumerate(bank.classes):
                cr = r.ratings.get(c)
                v = None if cr is None else (cr.response if kind == "response" else cr.strategy)
                if v is not None:
                    out[si, mi, ci] = v
    out.flags.writeable = False
    return out


def _rated_tensor(bank: ScenarioBank, group: str) -> np.ndarray:
    per = [_members(bank, group, s) for s in bank.scenarios]
    m = max((len(p) for p in per), default=0)
    out = np.full((bank.n_scenarios, max(m, 1), len(bank.classes)), -1, dtype=np.int64)
    for si, raters in enumerate(per):
        for mi, r in enumerate(raters):
            for ci, c in enumerate(bank.classes):
                cr = r.ratings.get(c)
                if cr is not None and cr.rated_response is not None:
                    out[si, mi, ci] = cr.rated_response
    return out


def make_bank(
    meta: BankMeta, scenarios: Sequence[BankScenario], source: str = ""
) -> ScenarioBank:
    """Validate and build a bank. Errors name the file, scenario, group, rater and field."""
    file = source or None
    _validate_meta(meta, file)
    if not scenarios:
        raise InputError("the bank has no scenarios", file=file)
    seen: set[str] = set()
    rater_groups: dict[str, tuple[str, ...]] = {}
    classes = tuple(c.name for c in meta.classes)
    for s in scenarios:
        _validate_scenario(s, classes, meta, seen, rater_groups, file)
    return ScenarioBank(meta, tuple(scenarios), source)


def _validate_meta(meta: BankMeta, file: str | None) -> None:
    names = [c.name for c in meta.classes]
    if not names:
        raise InputError("a bank needs at least one response class", file=file, field="classes")
    if len(set(names)) != len(names):
        raise InputError(f"duplicate response class names {names}", file=file, field="classes")
    for c in meta.classes:
        if not isinstance(c, ResponseClass) or not c.name:
            raise InputError("response classes need a non-empty name", file=file,
                             field="classes")
    if len(meta.scale.labels) < 2:
        raise InputError("a rating scale needs at least two points", file=file, field="scale")


def where(sid: str, group: str | None = None, rater: str | None = None,
          cls: str | None = None) -> str:
    """The record part of an error message: scenario, then group, rater and class if known."""
    parts = [f"scenario {sid!r}"]
    if group is not None:
        parts.append(f"group {group!r}")
    if rater is not None:
        parts.append(f"rater {rater!r}")
    if cls is not None:
        parts.append(f"class {cls!r}")
    return ", ".join(parts)


def _validate_scenario(
    s: BankScenario, classes: tuple[str, ...], meta: BankMeta, seen: set[str],
    rater_groups: dict[str, tuple[str, ...]], file: str | None,
) -> None:
    if not isinstance(s.id, str) or not s.id:
        raise InputError("scenario id must be a non-empty string", file=file,
                         record=repr(s.id), field="id")
    if s.id in seen:
        raise InputError("duplicate scenario id", file=file, record=where(s.id), field="id")
    seen.add(s.id)
    if not isinstance(s.prompt, str):
        raise InputError("prompt must be a string", file=file, record=where(s.id),
                         field="prompt")
    if not isinstance(s.split, str) or not s.split:
        raise InputError("split must be a non-empty string", file=file, record=where(s.id),
                         field="split")
    missing = [c for c in classes if c not in s.responses]
    extra = [c for c in s.responses if c not in classes]
    if missing or extra:
        raise InputError(
            f"response classes differ from the bank's (missing {missing}, unknown {extra})",
            file=file, record=where(s.id), field="responses",
            hint=f"every scenario needs exactly the classes {', '.join(classes)}",
        )
    for c, texts in s.responses.items():
        if isinstance(texts, str) or any(not isinstance(t, str) for t in texts):
            raise InputError("responses must be a list of strings", file=file,
                             record=where(s.id, cls=c), field=f"responses.{c}")
    names: set[str] = set()
    for r in s.raters:
        _validate_rater(s, r, classes, meta, names, rater_groups, file)


def _validate_rater(
    s: BankScenario, r: RaterRecord, classes: tuple[str, ...], meta: BankMeta, names: set[str],
    rater_groups: dict[str, tuple[str, ...]], file: str | None,
) -> None:
    group = "+".join(r.groups) if r.groups else None
    rec = where(s.id, group, r.rater)
    if not isinstance(r.rater, str) or not r.rater:
        raise InputError("rater id must be a non-empty string", file=file, record=rec,
                         field="rater")
    if r.rater in names:
        raise InputError("rater listed twice in one scenario", file=file, record=rec,
                         field="rater")
    names.add(r.rater)
    if not r.groups or any(not isinstance(g, str) or not g for g in r.groups):
        raise InputError("a rater needs at least one non-empty group name", file=file,
                         record=rec, field="groups")
    if ALL in r.groups:
        raise InputError(f"group name {ALL!r} is reserved for the collective group",
                         file=file, record=rec, field="groups")
    known = rater_groups.setdefault(r.rater, tuple(r.groups))
    if known != tuple(r.groups):
        raise InputError(
            f"rater belongs to groups {list(r.groups)} here but {list(known)} elsewhere",
            file=file, record=rec, field="groups",
        )
    for c, cr in r.ratings.items():
        crec = where(s.id, group, r.rater, c)
        if c not in classes:
            raise InputError(f"unknown response class {c!r}", file=file, record=crec,
                             field="ratings", hint=f"classes: {', '.join(classes)}")
        if not isinstance(cr, ClassRating):
            raise InputError("expected a class rating", file=file, record=crec, field="ratings")
        _check_rating(cr.response, meta, file, crec, "response-rating")
        _check_rating(cr.strategy, meta, file, crec, "strategy-rating")
        _check_index(cr.rated_response, len(s.responses[c]), file, crec)


def _check_rating(v: object, meta: BankMeta, file: str | None, rec: str, fld: str) -> None:
    if v is None:
        return
    lo, hi = meta.scale.low, meta.scale.high
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"rating {v!r} is not an integer", file=file, record=rec, field=fld,
                         hint=f"use {lo}..{hi}")
    if not lo <= v <= hi:
        raise InputError(f"rating {v} is outside the scale {lo}..{hi}", file=file, record=rec,
                         field=fld)


def _check_index(v: object, n_texts: int, file: str | None, rec: str) -> None:
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"index {v!r} is not an integer", file=file, record=rec,
                         field="rated-response-index")
    if not 0 <= v < n_texts:
        raise InputError(
            f"index {v} does not name one of the class's {n_texts} response texts",
            file=file, record=rec, field="rated-response-index",
        )
