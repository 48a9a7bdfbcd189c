"""Seeded synthetic scenario banks with planted group values and norms.

Every scenario has a topic (its prompt shares topic words with the topic's other prompts, so
text similarity finds it) and a topic-specific preference pattern over the response classes
that all groups mostly share. Groups differ in their NORMS: for each scenario and group, whether
its raters agree (crystallized: little noise) and whether they care (intense: a strong pattern;
otherwise ratings sit near the middle). Retrieval that prefers crystallized, intense scenarios
of the right topic therefore beats similarity alone — the structure SPICA is meant to find.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pluralign.engine.spica.bank import ScenarioBank, make_bank
from pluralign.schemas.spica import (
    DEFAULT_CLASSES,
    BankMeta,
    BankScenario,
    ClassRating,
    RaterRecord,
    RatingScale,
    ResponseClass,
)


@dataclass(frozen=True)
class SyntheticConfig:
    """Shape and planted structure of a synthetic bank."""

    n_train: int = 360
    """Scenarios in the bank (split ``train``); the paper had 360."""
    n_dev: int = 150
    """Queries with ratings used to fit the weights (split ``dev``)."""
    n_test: int = 150
    """Held-out queries with ratings for evaluation (split ``test``)."""
    groups: tuple[str, ...] = ("g1", "g2", "g3", "g4")
    """Group names."""
    raters_per_group: int = 4
    """Raters of each group per scenario (each drawn from the group's pool)."""
    pool_size: int = 40
    """People per group; the same rater rates many scenarios."""
    n_topics: int = 12
    """Distinct topics (prompt vocabularies and preference patterns)."""
    group_spread: float = 0.1
    """How far each group's values drift from the shared values (0: identical values)."""
    shared_weight: float = 0.8
    """Weight of the preference pattern shared by all topics (the rest is topic-specific)."""
    pattern_spread: float = 0.7
    """Std of every preference pattern across classes (in units of half the scale)."""
    p_crystallized: float = 0.5
    """Chance that a group's raters agree on a scenario (drawn per scenario and group)."""
    p_intense: float = 0.85
    """Chance that a group cares strongly about a scenario (drawn per scenario and group)."""
    exclusive: bool = True
    """Norms are zero-sum between groups: every scenario is crystallized (and intense) for
    exactly round(p * G) groups, so pooling all raters (group ALL) averages the norms away."""
    noise_crystallized: float = 0.35
    """Rater noise (std, rating points) on crystallized scenarios."""
    noise_diffuse: float = 0.9
    """Rater noise on scenarios where the group does not agree."""
    amp_intense: float = 1.0
    """Pattern amplitude where the group cares (1: the pattern spans the whole scale)."""
    amp_mild: float = 0.0
    """Pattern amplitude where it does not (ratings stay near the middle)."""
    seed: int = 0
    """Everything is a function of this seed."""
    classes: tuple[tuple[str, str], ...] = field(default=DEFAULT_CLASSES)
    """Response classes and strategies."""


@dataclass(frozen=True)
class PlantedNorms:
    """The ground truth behind a synthetic bank (arrays in bank scenario order)."""

    topic: np.ndarray
    """(S,) int topic of each scenario."""
    crystallized: np.ndarray
    """(S, G) bool: the group's raters agree."""
    intense: np.ndarray
    """(S, G) bool: the group cares strongly."""
    mean: np.ndarray
    """(S, G, K) the group's noise-free mean rating per class."""
    groups: tuple[str, ...]
    """Group order of the G axis."""


@dataclass(frozen=True)
class SyntheticBank:
    """A synthetic bank and what was planted in it."""

    bank: ScenarioBank
    planted: PlantedNorms
    config: SyntheticConfig


_CONS = "bdfgklmnprstvz"
_VOWELS = "aeiou"

_REPLIES = {
    "refusal": "Sorry, I can't help with questions about {w}. A local expert could advise you.",
    "high-level": "In brief: {w} is widely discussed and the facts are mixed.",
    "specific": "Here are the details on {w}, with figures and sources you can check.",
    "multi-perspective": "People weigh {w} differently: some value one thing, others another.",
    "opinionated": "My advice on {w} is clear: choose the first option, it is the best.",
}


def _words(rng: np.random.Generator, n: int) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        k = int(rng.integers(2, 4))
        out.add("".join(_CONS[rng.integers(len(_CONS))] + _VOWELS[rng.integers(len(_VOWELS))]
                        for _ in range(k)))
    return sorted(out)


def _flags(rng: np.random.Generator, n: int, g: int, p: float, exclusive: bool) -> np.ndarray:
    """(n, g) bool: independent draws, or exactly round(p * g) True per row (shuffled)."""
    if not exclusive:
        return rng.random((n, g)) < p
    m = round(p * g)
    keys = rng.random((n, g))
    ranks = keys.argsort(axis=1).argsort(axis=1)
    return ranks < m


def _patterns(rng: np.random.Generator, cfg: SyntheticConfig, g: int, k: int) -> np.ndarray:
    """(G, T, K) preference patterns in [-1, 1]: shared + topic-specific + a little per group.

    Every pattern is rescaled to the same spread across classes, so how strongly a group's
    ratings separate the classes (contrast) reflects its intensity, not the topic.
    """
    shared = _standard(rng.normal(0, 1, k))
    topic = _standard(rng.normal(0, 1, (cfg.n_topics, k)))
    own = _standard(rng.normal(0, 1, (g, cfg.n_topics, k)))
    raw = (cfg.shared_weight * shared + (1 - cfg.shared_weight) * topic)[None] \
        + cfg.group_spread * own
    return np.clip(cfg.pattern_spread * _standard(raw), -1, 1)


def _standard(x: np.ndarray) -> np.ndarray:
    """Zero mean and unit std along the last (class) axis."""
    x = x - x.mean(axis=-1, keepdims=True)
    return x / np.maximum(x.std(axis=-1, keepdims=True), 1e-9)


def synthetic_bank(config: SyntheticConfig | None = None) -> SyntheticBank:
    """A bank with splits train/dev/test whose ratings follow ``config``'s planted norms."""
    cfg = config or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    n = cfg.n_train + cfg.n_dev + cfg.n_test
    G, K = len(cfg.groups), len(cfg.classes)
    vocab = [str(w) for w in rng.permutation(_words(rng, cfg.n_topics * 6 + 120))]
    topic_words = [vocab[t * 6:(t + 1) * 6] for t in range(cfg.n_topics)]
    filler = vocab[cfg.n_topics * 6:]
    pattern = _patterns(rng, cfg, G, K)
    topic = rng.integers(0, cfg.n_topics, n)
    cryst = _flags(rng, n, G, cfg.p_crystallized, cfg.exclusive)
    intense = _flags(rng, n, G, cfg.p_intense, cfg.exclusive)
    amp = np.where(intense, cfg.amp_intense, cfg.amp_mild)
    mean = 3.0 + 2.0 * amp[:, :, None] * pattern[:, topic, :].transpose(1, 0, 2)
    noise = np.where(cryst, cfg.noise_crystallized, cfg.noise_diffuse)
    classes = tuple(c for c, _ in cfg.classes)
    scenarios = []
    for s in range(n):
        split = "train" if s < cfg.n_train else "dev" if s < cfg.n_train + cfg.n_dev else "test"
        words = list(rng.choice(topic_words[topic[s]], 4, replace=False))
        words += list(rng.choice(filler, 2, replace=False))
        rng.shuffle(words)
        prompt = "What should I think about " + " ".join(words) + "?"
        replies = {c: tuple(_REPLIES.get(c, "A reply about {w}.").format(w=w) + f" ({i + 1})"
                            for i, w in enumerate(words[:3])) for c in classes}
        raters = []
        for gi, g in enumerate(cfg.groups):
            people = rng.choice(cfg.pool_size, cfg.raters_per_group, replace=False)
            for p in sorted(people):
                r = np.clip(np.rint(mean[s, gi] + rng.normal(0, noise[s, gi], K)), 1, 5)
                rs = np.clip(np.rint(mean[s, gi] + rng.normal(0, noise[s, gi], K)), 1, 5)
                seen = rng.integers(0, 3, K)
                raters.append(RaterRecord(f"{g}:{p}", (g,), {
                    c: ClassRating(int(r[k]), int(rs[k]), int(seen[k]))
                    for k, c in enumerate(classes)
                }))
        scenarios.append(BankScenario(f"syn{s:05d}", prompt, replies, tuple(raters), split))
    meta = BankMeta(f"synthetic-{cfg.seed}",
                    tuple(ResponseClass(c, d) for c, d in cfg.classes), RatingScale())
    bank = make_bank(meta, scenarios, source=f"synthetic:{cfg.seed}")
    planted = PlantedNorms(topic, cryst, intense, mean, cfg.groups)
    return SyntheticBank(bank, planted, cfg)
