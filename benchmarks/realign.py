"""Re-alignment speed: all targets from cached scores, against the plain loop, in one run.

Prints, for all 3,125 HelpSteer2 targets and for a MIC-shaped synthetic benchmark over all
117,649 targets: the fast path's time (label index built once, as the cache keeps it), the
loop oracle's time on a sample of targets extrapolated to all, the ratio and peak memory. The
last line is one JSON object. Run: ``python benchmarks/realign.py [--data DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

from pluralign.engine.align import LabelIndex, realign
from pluralign.engine.align_loop import realign_loop
from pluralign.engine.benchmark import Benchmark
from pluralign.engine.synthetic import noisy_predictions, synthetic_benchmark
from pluralign.engine.targets import all_targets


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _helpsteer2(data: str | None) -> tuple[Benchmark, str]:
    try:
        from pluralign.engine.data import load_benchmark

        return load_benchmark("helpsteer2", "eval", data, download=False), "helpsteer2/eval"
    except Exception as e:  # no data here: same shape, synthetic labels
        print(f"(HelpSteer2 not found: {e}; using a synthetic benchmark of its shape)")
        return synthetic_benchmark(500, (2, 2), 5, 5, seed=0), "synthetic 500x2x5x5"


def measure(bench: Benchmark, label: str, loop_sample: int, repeats: int) -> dict[str, float]:
    pred = noisy_predictions(bench, 0.25, seed=0)
    targets = all_targets(bench.attributes, bench.levels)
    t0 = time.perf_counter()
    index = LabelIndex(bench, targets)
    label_s = time.perf_counter() - t0
    realign(bench, pred, targets, index=index)  # compile / warm
    fast = _best_of(lambda: realign(bench, pred, targets, index=index), repeats)
    rng = np.random.default_rng(0)
    sample = targets.take(rng.choice(len(targets), size=loop_sample, replace=False))
    t0 = time.perf_counter()
    realign_loop(bench, pred, sample)
    loop_per_target = (time.perf_counter() - t0) / loop_sample
    pairs = bench.n_responses * len(targets)
    print(
        f"{label}: {len(targets):,} targets x {bench.n_scenarios} scenarios "
        f"({bench.n_responses} responses)\n"
        f"  label index (once per benchmark and target set): {label_s:.3f} s\n"
        f"  fast re-alignment, best of {repeats}: {fast * 1e3:.1f} ms "
        f"({fast / pairs * 1e9:.2f} ns per (response, target))\n"
        f"  plain loop: {loop_per_target * 1e3:.2f} ms per target "
        f"-> {loop_per_target * len(targets):.1f} s for all (extrapolated from {loop_sample})\n"
        f"  speed-up: {loop_per_target * len(targets) / fast:,.0f}x"
    )
    return {"fast": fast, "loop_per_target": loop_per_target, "n_targets": len(targets),
            "label_index": label_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=os.environ.get("PLURALIGN_DATA"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--loop-sample", type=int, default=30)
    args = parser.parse_args()
    if args.data is None and (Path(__file__).resolve().parents[2] / "shared/data").exists():
        args.data = str(Path(__file__).resolve().parents[2] / "shared/data")
    hs2, hs2_label = _helpsteer2(args.data)
    hs = measure(hs2, hs2_label, args.loop_sample, args.repeats)
    mic = measure(synthetic_benchmark(), "MIC-shaped synthetic", args.loop_sample, args.repeats)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mb:.0f} MB (whole process, imports included); "
          f"numba threads: {os.environ.get('NUMBA_NUM_THREADS', 'all cores')}")
    print(json.dumps({
        "mic_all_targets_seconds": round(mic["fast"], 4),
        "hs2_all_targets_seconds": round(hs["fast"], 4),
        "loop_seconds_per_target_mic": round(mic["loop_per_target"], 5),
        "speedup_vs_loop_mic": round(mic["loop_per_target"] * mic["n_targets"] / mic["fast"]),
        "peak_rss_mb": round(peak_mb),
        "mic_label_index_seconds": round(mic["label_index"], 3),
    }))


if __name__ == "__main__":
    main()
