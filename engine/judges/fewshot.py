"""In-context examples: a rubric of training scenarios per attribute for the regression judges,
solved choices per target for the few-shot prompt-aligned judge (end of file).

Training scenarios are ranked by text similarity to the query (TF-IDF cosine by default); walking
that ranking, each distinct label level of the attribute takes the most similar example that
shows it (the ``k`` most similar with ``shots=k``), so the examples cover every level. Answers
use the training reasonings and true scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.levels import common_scale, grid_scale, to_units
from pluralign.engine.data.similarity import TextSimilarity, get_similarity
from pluralign.engine.errors import InputError
from pluralign.engine.judges.base import REASONING_MAX, SCALE, scenario_text

RULE_VERSION = "rubric-v1"
"""Bump when the selection rule changes (it is part of every few-shot judge identity)."""

RUBRIC_SHOTS = 1
"""Examples per label level of the regression judges' rubric (steerable-pluralism paper §4.1:
one solved example per level, so every level of the scale is shown once)."""


def check_shots(k: int) -> int:
    """``k`` as a count of in-context examples: an integer of at least one."""
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise InputError(f"few-shot needs at least one example, got {k!r}", field="shots")
    return int(k)


def attribute_column(train: Benchmark, attribute: str) -> int:
    """Index of ``attribute`` in the training split, or an error naming the split's attributes."""
    try:
        return train.attributes.index(attribute)
    except ValueError:
        raise InputError(
            f"training split has no attribute {attribute!r}", file=train.source or None,
            field="attribute", hint=f"it has {', '.join(train.attributes)}",
        ) from None


@dataclass(frozen=True)
class Example:
    """One training scenario shown as a solved example for one attribute."""

    train_index: int
    """Scenario index in the training benchmark."""
    prompt: str
    """The training question."""
    responses: tuple[str, ...]
    """Its responses, in file order."""
    scores: tuple[int, ...]
    """True label of each response on 0..SCALE."""
    reasonings: tuple[str, ...]
    """One sentence per response explaining its label."""
    similarity: float
    """Similarity to the query that selected it."""


def example_reasoning(text: str | None, attribute: str, score: int) -> str:
    """The training reasoning, trimmed to the schema's limit; a plain sentence when absent."""
    if text and text.strip():
        return text.strip()[:REASONING_MAX]
    return f"This response rates {score} out of {SCALE} for {attribute}."


class _TrainingRanking:
    """What both selectors share: the training split, ``k``, and the similarity of any query
    text to every training scenario (fitted once on the training texts)."""

    def __init__(self, train: Benchmark, similarity: str | TextSimilarity, k: int) -> None:
        self.train = train
        """The training split examples come from."""
        self.k = check_shots(k)
        """How many examples (per label level for the rubric, per query for choices)."""
        self._sim = get_similarity(similarity) if isinstance(similarity, str) else similarity
        self._texts = [scenario_text(train, i) for i in range(train.n_scenarios)]
        self._sim.fit(self._texts)
        self._by_text = {t: i for i, t in enumerate(self._texts)}
        self._query_sims: dict[str, tuple[list[str], np.ndarray]] = {}

    def similarities(self, queries: Sequence[str]) -> np.ndarray:
        """(Q, C) similarity of each query text to every training scenario."""
        return self._sim.similarity(list(queries))

    def query_row(self, bench: Benchmark, scenario: int) -> tuple[str, np.ndarray]:
        """(text, similarity row to every training scenario) of one scenario of ``bench``;
        the whole benchmark is compared once, on the first call for it."""
        key = bench.content_hash  # not the identity: a limited run shares that with the full one
        if key not in self._query_sims:
            texts = [scenario_text(bench, i) for i in range(bench.n_scenarios)]
            self._query_sims[key] = (texts, self.similarities(texts))
        texts, sims = self._query_sims[key]
        return texts[scenario], sims[scenario]

    def _column(self, attribute: str) -> int:
        return attribute_column(self.train, attribute)


class FewShotSelector(_TrainingRanking):
    """Picks rubric-covering examples from a training split for any query scenario."""

    def __init__(self, train: Benchmark, similarity: str | TextSimilarity = "tfidf",
                 k: int = RUBRIC_SHOTS) -> None:
        super().__init__(train, similarity, k)
        units = to_units(train.labels, train.scale)
        self._units = units
        self._owner = train.scenario_of
        self._levels: dict[str, tuple[list[int], np.ndarray]] = {}

    @property
    def identity(self) -> str:
        """Everything that changes which examples are chosen and how they read (``k`` only
        when it is not the default, so the rubric's identities stay as they were)."""
        per_level = "" if self.k == RUBRIC_SHOTS else f",k={self.k}"
        return (f"{RULE_VERSION}(train={self.train.identity},similarity={self._sim.identity}"
                f"{per_level})")

    def levels_shown(self, attribute: str) -> tuple[list[int], np.ndarray]:
        """Distinct label levels (grid units) of ``attribute`` in training, and a (C, L) bool
        matrix: does training scenario c show level l on some response."""
        if attribute in self._levels:
            return self._levels[attribute]
        col = self._column(attribute)
        values = self._units[:, col]
        levels = sorted({int(v) for v in values})
        shows = np.zeros((self.train.n_scenarios, len(levels)), dtype=bool)
        pos = {v: j for j, v in enumerate(levels)}
        for row, v in enumerate(values):
            shows[self._owner[row], pos[int(v)]] = True
        self._levels[attribute] = (levels, shows)
        return levels, shows

    def select(self, query_text: str, attribute: str, sims: np.ndarray) -> list[Example]:
        """Examples for one query: per level (ascending) the ``k`` most similar scenarios
        showing it.

        ``sims`` is the query's row of :meth:`similarities`. A training scenario identical to
        the query is never its own example; one example covering several levels is used once
        and counts for each of them.
        """
        _, shows = self.levels_shown(attribute)
        ranking = np.argsort(-np.asarray(sims, dtype=np.float64), kind="stable")
        own = self._by_text.get(query_text)
        chosen: list[int] = []
        for level in range(shows.shape[1]):
            found = 0
            for c in ranking:
                if int(c) != own and shows[c, level]:
                    if int(c) not in chosen:
                        chosen.append(int(c))
                    found += 1
                    if found == self.k:
                        break
        return [self._example(c, attribute, float(sims[c])) for c in chosen]

    def _example(self, c: int, attribute: str, similarity: float) -> Example:
        sc = self.train.scenarios[c]
        scores = tuple(round(float(lab[attribute]) * SCALE) for lab in sc.labels)
        texts = [
            (sc.reasonings[r].get(attribute) if sc.reasonings is not None else None)
            for r in range(len(sc.responses))
        ]
        reasonings = tuple(
            example_reasoning(t, attribute, s) for t, s in zip(texts, scores, strict=True)
        )
        return Example(c, sc.prompt, tuple(sc.responses), scores, reasonings, similarity)


CHOICE_RULE_VERSION = "choice-v1"
"""Bump when the choice-example rule changes (part of the few-shot prompt-aligned identity)."""

CHOICE_SHOTS = 5
"""Examples per query of the few-shot prompt-aligned judge (steerable-pluralism paper §5.3: five
scenarios)."""


@dataclass(frozen=True)
class ChoiceExample:
    """One training scenario solved for an alignment target: the response its labels imply."""

    train_index: int
    """Scenario index in the training benchmark."""
    prompt: str
    """The training question."""
    responses: tuple[str, ...]
    """Its responses, in file order."""
    choice: int
    """Index of the one response closest to the target on labels."""
    similarity: float
    """Similarity to the query that selected it."""


class ChoiceExampleSelector(_TrainingRanking):
    """Solved examples for the few-shot prompt-aligned judge (steerable-pluralism paper §5.3,
    Table 2).

    Training scenarios are ranked by the same pluggable similarity as the regression rubric;
    walking that ranking, the first ``k`` whose labels imply one answer for the target are kept.
    The implied answer is the label-closest response (Euclidean over the target's attributes,
    in exact grid units, as the accuracy protocol decides correctness); a scenario where more
    than one response is label-closest (all tie, or several share the minimum) implies no single
    answer and is skipped, and a training scenario identical to the query is never its example.
    """

    def __init__(self, train: Benchmark, similarity: str | TextSimilarity = "tfidf",
                 k: int = CHOICE_SHOTS) -> None:
        super().__init__(train, similarity, k)

    @property
    def identity(self) -> str:
        """Everything that changes which examples are chosen."""
        return (f"{CHOICE_RULE_VERSION}(train={self.train.identity},"
                f"similarity={self._sim.identity},k={self.k})")

    def implied_choice(self, c: int, target: Mapping[str, float]) -> int | None:
        """The one label-closest response of training scenario ``c`` for ``target``, or None
        when several responses share the minimum label distance (an empty target included)."""
        cols = [self._column(a) for a in target]
        values = [float(v) for v in target.values()]
        scale = common_scale(self.train.scale, grid_scale(values)) if values else 1
        lo, hi = int(self.train.offsets[c]), int(self.train.offsets[c + 1])
        units = to_units(self.train.labels[lo:hi][:, cols], scale)
        goal = [round(v * scale) for v in values]
        dists = [sum((int(row[j]) - g) ** 2 for j, g in enumerate(goal)) for row in units]
        best = min(dists)
        winners = [i for i, d in enumerate(dists) if d == best]
        return winners[0] if len(winners) == 1 else None

    def select(self, query_text: str, target: Mapping[str, float],
               sims: np.ndarray) -> list[ChoiceExample]:
        """The ``k`` most similar training scenarios with one implied answer, nearest first;
        ``sims`` is the query's row of :meth:`similarities`."""
        ranking = np.argsort(-np.asarray(sims, dtype=np.float64), kind="stable")
        own = self._by_text.get(query_text)
        out: list[ChoiceExample] = []
        for c in (int(i) for i in ranking):
            if len(out) == self.k:
                break
            if c == own:
                continue
            choice = self.implied_choice(c, target)
            if choice is None:
                continue
            sc = self.train.scenarios[c]
            out.append(ChoiceExample(c, sc.prompt, tuple(sc.responses), choice, float(sims[c])))
        return out
