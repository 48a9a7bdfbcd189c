"""Scorers that need neither a model nor training: ``oracle``, ``random`` and ``constant``."""

from __future__ import annotations

import math

import numpy as np

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.store.cache import scorer_identity


class _Untrained:
    needs_train = False
    name = ""

    def settings(self) -> dict[str, object]:
        return {}

    def identity(self, bench: Benchmark, train: Benchmark | None) -> str:
        return scorer_identity(self.name, self.settings())

    def fit(self, train: Benchmark) -> None:
        return None


class OracleScorer(_Untrained):
    """The true labels: 100 % accuracy, an upper bound and a check of the pipeline."""

    name = "oracle"

    def predict(self, bench: Benchmark) -> np.ndarray:
        return np.array(bench.labels, dtype=np.float64)


class RandomScorer(_Untrained):
    """Uniform scores in [0, 1], reproducible from ``seed``: the chance baseline."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InputError(f"seed must be an integer >= 0, got {seed!r}", field="seed")
        self.seed = int(seed)
        """Seed of the generator."""

    def settings(self) -> dict[str, object]:
        return {"seed": self.seed}

    def predict(self, bench: Benchmark) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        return rng.random((bench.n_responses, len(bench.attributes)))


class ConstantScorer(_Untrained):
    """The same score everywhere: every response ties, so the lowest index is always chosen."""

    name = "constant"

    def __init__(self, value: float = 0.5) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise InputError(f"value must be a number in [0, 1], got {value!r}", field="value")
        self.value = float(value)
        """The score given to every response and attribute."""

    def settings(self) -> dict[str, object]:
        return {"value": self.value}

    def predict(self, bench: Benchmark) -> np.ndarray:
        return np.full((bench.n_responses, len(bench.attributes)), self.value)
