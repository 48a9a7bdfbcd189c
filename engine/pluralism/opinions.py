"""Distributional pluralism from models (the pluralism roadmap, Sorensen et al. 2024, §3.3 and
App. A): a model's answer distribution per multiple-choice question, from N sampled answers or
from option-letter log-probabilities, compared with each population by
``engine/pluralism/distributional.py`` (Jensen–Shannon distance, entropy, shuffled-label control).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

import numpy as np

from pluralign.engine.jsontypes import UntrustedJSON
from pluralign.engine.pluralism.distributional import Question

_LETTER_MARKS = "()[]."
"""Marks around an option letter in a first token (``(A``, ``A)``, ``A.``)."""


def sample_distribution(choices: Iterable[int], n_options: int) -> np.ndarray | None:
    """Share of the sampled answers per option; None when no answer was sampled."""
    counts = np.zeros(n_options, dtype=np.float64)
    for c in choices:
        if not 0 <= c < n_options:
            raise ValueError(f"choice {c} outside 0..{n_options - 1}")
        counts[c] += 1
    total = counts.sum()
    return counts / total if total > 0 else None


def logprob_distribution(top_logprobs: Mapping[str, float],
                         option_letters: Sequence[str]) -> np.ndarray | None:
    """Distribution over options from the first answer token's log-probabilities (as in the
    roadmap's App. A): the probability of each option's letter (a token equal to the letter up
    to surrounding spaces and brackets or a full stop, as `` A``, ``A``, ``(A``, ``A)``, ``A.``;
    several such tokens add up), renormalised over the letters. None when no letter is among
    the tokens."""
    mass = np.zeros(len(option_letters), dtype=np.float64)
    index = {letter: k for k, letter in enumerate(option_letters)}
    for token, lp in top_logprobs.items():
        k = index.get(token.strip().strip(_LETTER_MARKS).strip())
        if k is not None and math.isfinite(lp):
            mass[k] += math.exp(lp)
    total = mass.sum()
    return mass / total if total > 0 else None


def answers_by_question(rows: Iterable[Mapping[str, UntrustedJSON]],
                        samples: int) -> dict[str, list[int]]:
    """Successful sampled answers per cache scenario key, one per sample index < ``samples``
    (a success wins over an earlier failure row of the same sample)."""
    best: dict[tuple[str, int], int] = {}
    for r in rows:
        if r["error"] is None and r["choice"] is not None and int(r["sample"]) < samples:
            best[(str(r["scenario"]), int(r["sample"]))] = int(r["choice"])
    out: dict[str, list[int]] = {}
    for (scenario, _), choice in sorted(best.items()):
        out.setdefault(scenario, []).append(choice)
    return out


def logprobs_by_question(
        rows: Iterable[Mapping[str, UntrustedJSON]]) -> dict[str, dict[str, float]]:
    """The first answer token's top log-probabilities per cache scenario key, from successful
    log-probability rows (their ``meta`` holds them under ``top_logprobs``)."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["error"] is None and int(r["sample"]) == 0:
            top = json.loads(r["meta"] or "{}").get("top_logprobs")
            if isinstance(top, dict):
                out[str(r["scenario"])] = {str(t): float(lp) for t, lp in top.items()}
    return out


def with_model(questions: Sequence[Question], keys: Sequence[str],
               answers: Mapping[str, Sequence[int]], model: str) -> tuple[list[Question], list[str]]:
    """``questions`` with ``model``'s sampled distribution added (``keys[i]`` is question i's
    cache scenario key); returns them and the ids of questions without any answer (left out)."""
    dists = {key: sample_distribution(answers.get(key, ()), len(q.options))
             for q, key in zip(questions, keys, strict=True)}
    return with_distributions(questions, keys, dists, model)


def with_distributions(questions: Sequence[Question], keys: Sequence[str],
                       dists: Mapping[str, np.ndarray | None],
                       model: str) -> tuple[list[Question], list[str]]:
    """``questions`` with ``model``'s distribution ``dists[keys[i]]`` added; returns them and
    the ids of questions without one (left out)."""
    out, missing = [], []
    for q, key in zip(questions, keys, strict=True):
        dist = dists.get(key)
        if dist is None:
            missing.append(q.id)
            continue
        out.append(replace(q, models={**q.models, model: dist}))
    return out, missing
