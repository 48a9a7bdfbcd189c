"""Jury evaluation speed and memory: 10,000 jurors over a MIC-shaped benchmark.

A synthetic benchmark of MIC's shape (336 scenarios, 2-4 responses, the six moral attributes,
seven levels) and the documented 10,000-juror group file (four groups sampled over the MIC
target grid). Scores are read from a score cache when the cache module is present (written
first, so the timed path is the cached one), else taken from memory. Prints the evaluation
time (best and median of repeats, compilation excluded), the welfare-optimal selection time,
peak RSS and the peak of numpy allocations during one evaluation. The last line is JSON.
Run: ``python benchmarks/jury.py [--jurors-file FILE] [--repeats 5] [--no-cache]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from pluralign.engine.data.benchmark import MIC_ATTRIBUTES, Benchmark
from pluralign.engine.data.synthetic import noisy_predictions, synthetic_benchmark
from pluralign.engine.pluralism.juries import load_jury
from pluralign.engine.pluralism.jury_eval import JuryConfig, evaluate_jury, select_welfare_optimal

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "mic_jury_10k.json"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _NoisyScorer:
    """A stand-in for a decent scorer: labels plus seeded noise (the Scorer protocol)."""

    name = "noisy-labels"
    needs_train = False

    def identity(self, bench: Benchmark, train: Benchmark | None) -> str:
        return "noisy-labels#sigma0.25-seed0"

    def fit(self, train: Benchmark) -> None:
        pass

    def predict(self, bench: Benchmark) -> np.ndarray:
        return noisy_predictions(bench, 0.25, seed=0)


def _cached_predictions(bench: Benchmark, use_cache: bool) -> tuple[np.ndarray, str]:
    """Predictions through the score cache when it exists (written once, then read)."""
    scorer = _NoisyScorer()
    if not use_cache:
        return scorer.predict(bench), "in memory (--no-cache)"
    try:
        from pluralign.engine.scorers import score_through_cache
        from pluralign.engine.store.cache import ScoreCache
    except ImportError:
        return scorer.predict(bench), "in memory (engine.cache not available)"
    with tempfile.TemporaryDirectory(prefix="pluralign-jury-bench-") as root:
        cache = ScoreCache(Path(root))
        score_through_cache(scorer, bench, cache)  # fill
        t0 = time.perf_counter()
        cached = np.asarray(score_through_cache(scorer, bench, cache))
        return cached, f"score cache ({time.perf_counter() - t0:.3f} s to read)"


def _times(fn: Any, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jurors-file", default=str(EXAMPLE))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--no-cache", action="store_true",
                        help="keep scores in memory instead of reading them from a score cache")
    args = parser.parse_args()

    bench = synthetic_benchmark(336, (2, 4), 6, 7, seed=0, attributes=MIC_ATTRIBUTES, name="mic")
    pred, source = _cached_predictions(bench, not args.no_cache)
    jury = load_jury(args.jurors_file, bench.attributes, bench.levels)
    n_unique = len(jury.unique_targets()[0])
    cfg = JuryConfig(n_bootstrap=args.bootstrap)
    rss_before = _rss_mb()

    t0 = time.perf_counter()
    evaluate_jury(bench, pred, jury, cfg)  # includes compiling (or loading) the kernels
    first = time.perf_counter() - t0
    evals = _times(lambda: evaluate_jury(bench, pred, jury, cfg), args.repeats)
    tracemalloc.start()
    result = evaluate_jury(bench, pred, jury, cfg)
    numpy_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    select_welfare_optimal(bench, pred, jury, cfg.alphas)
    sels = _times(lambda: select_welfare_optimal(bench, pred, jury, cfg.alphas),
                  max(1, args.repeats // 2))
    rss = _rss_mb()

    print(f"benchmark: MIC-shaped synthetic, {bench.n_scenarios} scenarios, "
          f"{bench.n_responses} responses, {len(bench.attributes)} attributes; scores: {source}")
    print(f"jury: {jury.n_jurors:,} jurors in {jury.n_groups} groups, {n_unique:,} distinct "
          f"targets, {int(jury.empty.sum())} with the empty target")
    print(f"evaluate (accuracy, utility, welfare at {len(cfg.alphas)} alphas, threshold, "
          f"{cfg.n_bootstrap} bootstrap resamples): best {min(evals):.3f} s, "
          f"median {statistics.median(evals):.3f} s over {len(evals)} runs "
          f"(first call {first:.2f} s incl. kernel compile/load)")
    print(f"welfare-optimal selection (predicted and true welfare of every response, "
          f"per group): best {min(sels):.3f} s")
    print(f"memory: peak RSS {rss:.0f} MiB (before evaluating {rss_before:.0f} MiB); "
          f"numpy allocations peak during one evaluation {numpy_peak:.1f} MiB")
    for row in result.rows():
        print(f"  {row['group']:<10} utility {row['utility']:.3f}  w(inf) "
              f"{row['welfare_ainf']:.3f}  accuracy {row['accuracy']:.1f}")
    print(json.dumps({
        "jurors": jury.n_jurors, "distinct_targets": n_unique,
        "scenarios": bench.n_scenarios, "evaluate_best_s": round(min(evals), 4),
        "evaluate_median_s": round(statistics.median(evals), 4),
        "select_best_s": round(min(sels), 4), "peak_rss_mib": round(rss, 1),
        "numpy_peak_mib": round(numpy_peak, 1), "scores": source,
    }))


if __name__ == "__main__":
    main()
