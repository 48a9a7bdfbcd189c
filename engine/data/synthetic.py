"""Seeded synthetic benchmarks and predictions of any shape, for scale and property tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pluralign.engine.data.benchmark import Benchmark, make_benchmark
from pluralign.schemas.records import Scenario


def grid_levels(n_levels: int, decimals: int | None = 2) -> tuple[float, ...]:
    """``n_levels`` evenly spaced values in [0, 1], rounded like MIC's (7 -> 0, .17, ..., 1)."""
    vals = [i / (n_levels - 1) for i in range(n_levels)]
    return tuple(round(v, decimals) if decimals is not None else v for v in vals)


def synthetic_benchmark(
    n_scenarios: int = 336,
    responses: tuple[int, int] = (2, 4),
    n_attributes: int = 6,
    n_levels: int = 7,
    seed: int = 0,
    attributes: Sequence[str] | None = None,
    name: str = "synthetic",
) -> Benchmark:
    """A benchmark with random labels on the level grid.

    ``responses`` is the inclusive (min, max) number of responses per scenario. The default shape
    is MIC's: 336 scenarios, 2-4 responses, 6 attributes, 7 levels.
    """
    rng = np.random.default_rng(seed)
    levels = grid_levels(n_levels)
    attrs = tuple(attributes) if attributes else tuple(f"a{i}" for i in range(n_attributes))
    scenarios = []
    for s in range(n_scenarios):
        k = int(rng.integers(responses[0], responses[1] + 1))
        idx = rng.integers(0, n_levels, size=(k, len(attrs)))
        labels = tuple({a: levels[int(i)] for a, i in zip(attrs, row, strict=True)} for row in idx)
        scenarios.append(
            Scenario(
                id=f"s{s:06d}",
                prompt=f"synthetic prompt {s}",
                responses=tuple(f"response {s}.{r}" for r in range(k)),
                labels=labels,
            )
        )
    return make_benchmark(name, f"seed{seed}", attrs, levels, scenarios, source=f"synthetic:{seed}")


def noisy_predictions(bench: Benchmark, noise: float = 0.2, seed: int = 0) -> np.ndarray:
    """Labels plus Gaussian noise, clipped to [0, 1]: a stand-in for a decent scorer."""
    rng = np.random.default_rng(seed)
    return np.clip(bench.labels + rng.normal(0.0, noise, bench.labels.shape), 0.0, 1.0)
