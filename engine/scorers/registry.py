"""The one registry of every scorer: model-free scorers, LLM judges and the reward scorer.

Each entry has a name, a kind, a one-line description (the help text), whether it reads the
training split, and its class as a lazy ``"module:Class"`` target (imported on first use, so
listing scorers imports nothing). :func:`scorer_names` and :func:`scorer_info` answer every
"which scorers are there" question; ``make_judge`` and ``get_scorer`` look their classes up here.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from pluralign.engine.errors import InputError

ScorerKind = Literal["model-free", "llm-score", "llm-choice", "reward"]
"""What a scorer is: ``model-free`` (no model call: fitted or fixed rules), ``llm-score`` (an
LLM judge answering attribute scores, so every target re-aligns from the cache), ``llm-choice``
(an LLM judge answering a chosen response per target) and ``reward`` (a reward model's heads)."""

KINDS: tuple[ScorerKind, ...] = get_args(ScorerKind)
"""Every kind, in the order :func:`scorer_names` lists them."""

JUDGE_KINDS: tuple[ScorerKind, ...] = ("llm-score", "llm-choice")
"""The kinds built by ``make_judge``."""


@dataclass(frozen=True)
class ScorerInfo:
    """One registered scorer."""

    name: str
    """The name users pass (``predictions`` takes its file as ``predictions:PATH``)."""
    kind: ScorerKind
    """What it is (:data:`ScorerKind`)."""
    description: str
    """One line of help text."""
    needs_train: bool
    """Whether it reads the training split as registered: a fitted model-free scorer, or a
    judge that is few-shot by default (in-context examples come from the training split)."""
    target: str | type[Any]
    """Its class, or ``"module:Class"`` imported on first use: the scorer class of a model-free
    scorer, the judge class of a judge (``make_judge`` builds it), the reward scorer's class."""

    def factory(self) -> type[Any]:
        """The class (imported now if it was registered lazily)."""
        if isinstance(self.target, type):
            return self.target
        module, _, attr = self.target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        assert isinstance(cls, type)
        return cls


_REGISTRY: dict[str, ScorerInfo] = {}
_PENDING_TRAIN: set[str] = set()
"""Lazily registered names whose ``needs_train`` is read from the class when first asked."""


def _path(t: str | type[Any]) -> str:
    return t if isinstance(t, str) else f"{t.__module__}:{t.__qualname__}"


def register_scorer(
    name: str,
    target: str | type[Any],
    *,
    kind: ScorerKind = "model-free",
    description: str = "",
    needs_train: bool | None = None,
) -> None:
    """Register ``target`` (a class, or ``"module:Class"`` imported on first use) as ``name``.

    ``needs_train`` None reads the class's own ``needs_train`` (when first asked, for a lazy
    target). Registering another target or kind under a taken name raises ValueError; the
    same one again is a no-op.
    """
    if not name or ":" in name:
        raise ValueError(f"invalid scorer name {name!r}")
    if isinstance(target, str) and target.count(":") != 1:
        raise ValueError(f"scorer target {target!r} must read 'module:Class'")
    if kind not in KINDS:
        raise ValueError(f"scorer kind {kind!r} is not one of {', '.join(KINDS)}")
    old = _REGISTRY.get(name)
    if old is not None:
        if _path(old.target) != _path(target) or old.kind != kind:
            raise ValueError(f"scorer name {name!r} is already registered to "
                             f"{_path(old.target)!r} ({old.kind})")
        return
    if needs_train is None and isinstance(target, type):
        needs_train = bool(getattr(target, "needs_train", False))
    _REGISTRY[name] = ScorerInfo(name, kind, description, bool(needs_train), target)
    if needs_train is None:
        _PENDING_TRAIN.add(name)


def scorer_names(kind: str | None = None) -> list[str]:
    """Registered names: model-free scorers, then LLM judges that score, then LLM judges that
    choose, then the reward scorer (each kind sorted); only those of ``kind`` when given."""
    kinds = KINDS if kind is None else (_check_kind(kind),)
    return [n for k in kinds for n in sorted(n for n, i in _REGISTRY.items() if i.kind == k)]


def _check_kind(kind: str) -> ScorerKind:
    for k in KINDS:
        if k == kind:
            return k
    raise InputError(f"unknown scorer kind {kind!r}", field="kind",
                     hint=f"kinds: {', '.join(KINDS)}")


def scorer_info(name: str) -> ScorerInfo:
    """The entry of scorer ``name`` (``predictions:PATH`` reads as ``predictions``); an
    unknown name raises InputError with the closest name and every known one."""
    key = name.partition(":")[0].strip()
    info = _REGISTRY.get(key)
    if info is None:
        names = scorer_names()
        close = difflib.get_close_matches(key, names, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        raise InputError(f"unknown scorer {name!r}", field="scorer",
                         hint=f"{guess}known: {', '.join(names)}")
    if key in _PENDING_TRAIN:
        info = replace(info, needs_train=bool(getattr(info.factory(), "needs_train", False)))
        _REGISTRY[key] = info
        _PENDING_TRAIN.discard(key)
    return info


def scorer_class(name: str) -> type[Any]:
    """The class registered as ``name`` (imported now if it was registered lazily)."""
    return scorer_info(name).factory()


# The built-in scorers. Judges are few-shot by default only where the paper's method is
# (comparative regression); the others read the training split only when asked to.
_BUILTIN: tuple[tuple[str, str, ScorerKind, bool, str], ...] = (
    ("oracle", "simple:OracleScorer", "model-free", False,
     "the true labels: 100 % accuracy, an upper bound and a check of the pipeline"),
    ("random", "simple:RandomScorer", "model-free", False,
     "uniform scores in [0, 1] from `seed`: the chance baseline"),
    ("constant", "simple:ConstantScorer", "model-free", False,
     "the same `value` everywhere: responses tie, so the lowest index is chosen"),
    ("predictions", "predictions_file:PredictionsScorer", "model-free", False,
     "predicted scores imported from a file (predictions:PATH)"),
    ("ridge", "ridge:RidgeScorer", "model-free", True,
     "per-attribute ridge regression on cheap text features, fitted on the training split"),
    ("comparative-regression", "judges.comparative:ComparativeJudge", "llm-score", True,
     "an LLM scores every response of a scenario on one attribute at once (few-shot)"),
    ("regression", "judges.regression:RegressionJudge", "llm-score", False,
     "an LLM scores one response on one attribute per call (the ablation)"),
    ("prompt-aligned", "judges.prompt_aligned:PromptAlignedJudge", "llm-choice", False,
     "an LLM picks a response with the target written as instructions in its prompt"),
    ("unaligned", "judges.unaligned:UnalignedJudge", "llm-choice", False,
     "an LLM picks the best response with no target: the implicit-bias baseline"),
    ("reward", "judges.reward:RewardScorer", "reward", False,
     "a reward model's output heads as attribute scores"),
)

for _name, _where, _kind, _train, _help in _BUILTIN:
    _module = (f"pluralign.engine.{_where}" if _where.startswith("judges.")
               else f"pluralign.engine.scorers.{_where}")
    register_scorer(_name, _module, kind=_kind, description=_help, needs_train=_train)
