"""Re-alignment speed: all targets from cached scores, against the plain loop, in one run.

Prints, for all 3,125 HelpSteer2 targets and for a MIC-shaped synthetic benchmark over all
117,649 targets: the fast path's time (label index built once, as the cache keeps it), the
loop oracle's time on a sample of targets extrapolated to all, the ratio and peak memory; then
the peak RSS of re-aligning all MIC targets at 1,000 / 10,000 / 20,000 scenarios under one
``--memory-budget`` (each size in a fresh process, so each peak is its own). The last line is
one JSON object. Run: ``python benchmarks/realign.py [--data DIR] [--memory-budget 512M]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pluralign.engine.align.align_loop import realign_loop
from pluralign.engine.align.realign import LabelIndex, parse_memory_budget, realign
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.synthetic import noisy_predictions, synthetic_benchmark
from pluralign.engine.data.targets import all_targets


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _helpsteer2(data: str | None) -> tuple[Benchmark, str]:
    try:
        from pluralign.engine.data.sources import load_benchmark

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


def scale_point(n_scenarios: int, budget: int) -> dict[str, float]:
    """In this process: all MIC targets at ``n_scenarios`` within ``budget``; peak RSS."""
    bench = synthetic_benchmark(n_scenarios, (2, 4), 6, 7, seed=0)
    pred = noisy_predictions(bench, 0.25, seed=0)
    targets = all_targets(bench.attributes, bench.levels)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    index = LabelIndex(bench, targets, memory_budget=budget)
    res = realign(bench, pred, targets, weighted=True, index=index)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"scenarios": n_scenarios, "responses": bench.n_responses, "seconds": seconds,
            "resident": index.resident, "peak_rss_mb": peak, "rss_before_mb": rss0,
            "mean_accuracy": float(np.nanmean(res.accuracy))}


def scaling(sizes: list[int], budget: int) -> list[dict[str, float]]:
    out = []
    for n in sizes:
        proc = subprocess.run([sys.executable, __file__, "--point", str(n), "--memory-budget",
                               str(budget)], capture_output=True, text=True, check=True)
        point = json.loads(proc.stdout.strip().splitlines()[-1])
        out.append(point)
        print(f"  {n:>6,} scenarios x 117,649 targets ({point['responses']:,} responses): "
              f"{point['seconds']:.1f} s, {'resident' if point['resident'] else 'streaming'}"
              f" label side, peak RSS {point['peak_rss_mb']:.0f} MB "
              f"(after building the benchmark {point['rss_before_mb']:.0f} MB)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=os.environ.get("PLURALIGN_DATA"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--loop-sample", type=int, default=30)
    parser.add_argument("--memory-budget", default="512M",
                        help="budget of the scaling runs (default 512M)")
    parser.add_argument("--sizes", default="1000,10000,20000",
                        help="scenario counts of the scaling runs ('' to skip)")
    parser.add_argument("--point", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    budget = parse_memory_budget(args.memory_budget)
    if args.point is not None:
        print(json.dumps(scale_point(args.point, budget)))
        return
    if args.data is None and (Path(__file__).resolve().parents[2] / "shared/data").exists():
        args.data = str(Path(__file__).resolve().parents[2] / "shared/data")
    hs2, hs2_label = _helpsteer2(args.data)
    hs = measure(hs2, hs2_label, args.loop_sample, args.repeats)
    mic = measure(synthetic_benchmark(), "MIC-shaped synthetic", args.loop_sample, args.repeats)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak_mb:.0f} MB (whole process, imports included); "
          f"numba threads: {os.environ.get('NUMBA_NUM_THREADS', 'all cores')}")
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    points = []
    if sizes:
        print(f"peak RSS vs scenarios, all MIC targets, memory budget {budget / 2**20:.0f} MiB "
              "(weighted score included):")
        points = scaling(sizes, budget)
    rss = [p["peak_rss_mb"] for p in points]
    print(json.dumps({
        "scaling": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in p.items()}
                    for p in points],
        "peak_rss_ratio_max_over_min": round(max(rss) / min(rss), 2) if rss else None,
        "memory_budget_mb": round(budget / 2**20),
        "mic_all_targets_seconds": round(mic["fast"], 4),
        "hs2_all_targets_seconds": round(hs["fast"], 4),
        "loop_seconds_per_target_mic": round(mic["loop_per_target"], 5),
        "speedup_vs_loop_mic": round(mic["loop_per_target"] * mic["n_targets"] / mic["fast"]),
        "peak_rss_mb": round(peak_mb),
        "mic_label_index_seconds": round(mic["label_index"], 3),
    }))


if __name__ == "__main__":
    main()
