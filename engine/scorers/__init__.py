"""Scorers that need no model: a registry of lazy ``"module:Class"`` entries and its lookup.

``get_scorer("ridge")``, ``get_scorer("random", seed=3)``, ``get_scorer("predictions:PATH")``;
:func:`score_through_cache` computes only what the score cache lacks.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from pluralign.engine.errors import InputError
from pluralign.engine.scorers.base import Scorer, checked_predictions
from pluralign.engine.scorers.through_cache import score_through_cache

__all__ = [
    "Scorer",
    "checked_predictions",
    "get_scorer",
    "register_scorer",
    "score_through_cache",
    "scorer_class",
    "scorer_names",
]

_REGISTRY: dict[str, str | type[Any]] = {}


def register_scorer(name: str, target: str | type[Any]) -> None:
    """Register ``target`` (a class, or ``"module:Class"`` imported on first use) as ``name``.

    Registering another target under a taken name raises ValueError; the same one is a no-op.
    """
    if not name or ":" in name:
        raise ValueError(f"invalid scorer name {name!r}")
    if isinstance(target, str) and target.count(":") != 1:
        raise ValueError(f"scorer target {target!r} must read 'module:Class'")
    old = _REGISTRY.get(name)
    if old is not None and old != target and not _same(old, target):
        raise ValueError(f"scorer name {name!r} is already registered to {old!r}")
    _REGISTRY[name] = target


def _same(a: str | type[Any], b: str | type[Any]) -> bool:
    def path(t: str | type[Any]) -> str:
        return t if isinstance(t, str) else f"{t.__module__}:{t.__qualname__}"

    return path(a) == path(b)


def scorer_names() -> list[str]:
    """Registered names, sorted."""
    return sorted(_REGISTRY)


def scorer_class(name: str) -> type[Any]:
    """The class registered as ``name`` (imported now if it was registered lazily)."""
    if name not in _REGISTRY:
        raise InputError(f"unknown scorer {name!r}", field="scorer",
                         hint=f"known: {', '.join(scorer_names())}")
    target = _REGISTRY[name]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = target
    assert isinstance(target, type)
    return target


def get_scorer(spec: str, **options: Any) -> Scorer:
    """A scorer from ``name`` or ``name:ARG`` (ARG is the first positional argument, e.g.
    the file of ``predictions:PATH``), with keyword ``options``."""
    name, sep, arg = spec.partition(":")
    cls = scorer_class(name.strip())
    args = (arg,) if sep else ()
    try:
        inspect.signature(cls).bind(*args, **options)
    except TypeError as e:
        raise InputError(f"bad options for scorer {name!r}: {e}", field="scorer",
                         hint=f"{name}{inspect.signature(cls)}") from None
    scorer = cls(*args, **options)
    assert isinstance(scorer, Scorer)
    return scorer


register_scorer("oracle", "pluralign.engine.scorers.simple:OracleScorer")
register_scorer("random", "pluralign.engine.scorers.simple:RandomScorer")
register_scorer("constant", "pluralign.engine.scorers.simple:ConstantScorer")
register_scorer("predictions", "pluralign.engine.scorers.predictions_file:PredictionsScorer")
register_scorer("ridge", "pluralign.engine.scorers.ridge:RidgeScorer")
