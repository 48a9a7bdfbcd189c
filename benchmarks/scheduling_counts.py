"""Requests and generations: our scheduling against the research code's per-target loop.

The research code (seed 003's repository, ``run_experiment.py`` with the comparative regression
model) runs the whole evaluation once per alignment target: for every scenario it prompts the
model once per attribute *named in the target*, ``num_samples`` times, each sample its own
prompt. Our scheduler sends one request per (scenario, attribute, sample) once, whatever the
targets, and serves every target from the cache.

    python benchmarks/scheduling_counts.py [--data DIR] [--samples 5]

Prints a table; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.targets import TargetSet, all_targets, sampled_targets


def helpsteer2(data: str | None) -> tuple[Benchmark, TargetSet, str]:
    """The HelpSteer2 eval split and its published sampled targets, else same-shaped stand-ins."""
    from pluralign.engine.data.benchmark import HELPSTEER2_ATTRIBUTES, HELPSTEER2_LEVELS
    from pluralign.engine.data.sources import load_benchmark, published_targets
    from pluralign.engine.data.synthetic import synthetic_benchmark
    from pluralign.engine.errors import PluralignError

    try:
        bench = load_benchmark("helpsteer2", "eval", data, download=False)
        sampled = published_targets("helpsteer2", "sampled", data)
        source = "published HelpSteer2 eval split"
    except PluralignError:
        bench = synthetic_benchmark(500, (2, 2), 5, 5, attributes=HELPSTEER2_ATTRIBUTES,
                                    name="helpsteer2-shaped")
        sampled = None
        source = "synthetic stand-in shaped like HelpSteer2 eval (500 x 2 responses x 5)"
    if sampled is None:
        sampled = sampled_targets(HELPSTEER2_ATTRIBUTES, HELPSTEER2_LEVELS)
    return bench, sampled, source


def per_target_generations(bench: Benchmark, targets: TargetSet, samples: int) -> int:
    """The research loop: per target, per scenario, per attribute in the target, ``samples``
    prompts (the empty target names no attribute and costs nothing)."""
    return int(targets.n_attributes.sum()) * bench.n_scenarios * samples


def our_requests(bench: Benchmark, samples: int, targets: list[TargetSet]) -> int:
    """Distinct work items our planner sends for these target sets (they do not change it)."""
    from pluralign.engine.judges import JudgeSettings, make_judge
    from pluralign.engine.run.scheduler import plan

    judge = make_judge("comparative-regression", bench, JudgeSettings(model="count-only"))
    items = []
    for _ in targets:  # every target set asks for the same items; duplicates are removed
        items += judge.items(range(bench.n_scenarios), samples)
    return len(plan(items, set()).pending)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="data folder with helpsteer2/ and targets")
    p.add_argument("--samples", type=int, default=5, help="samples per prompt (default 5)")
    args = p.parse_args(argv)
    bench, sampled, source = helpsteer2(args.data)
    every = all_targets(bench.attributes, bench.levels)
    rows = []
    for samples in sorted({1, args.samples}):
        ours = our_requests(bench, samples, [sampled, every])
        for name, ts in (("sampled", sampled), ("all", every)):
            theirs = per_target_generations(bench, ts, samples)
            rows.append({
                "targets": name, "n_targets": len(ts), "samples": samples,
                "per_target_requests": theirs, "per_target_generations": theirs,
                "our_requests": ours, "our_generations": ours,
                "prompt_aligned_requests": len(ts) * bench.n_scenarios * samples,
                "saving": round(theirs / ours, 1),
            })
    print(f"benchmark: {source}: {bench.n_scenarios} scenarios, "
          f"{len(bench.attributes)} attributes")
    print(f"{'targets':<9}{'T':>6}{'samples':>8}{'per-target gens':>17}{'ours':>8}"
          f"{'saving':>9}{'prompt-aligned':>16}")
    for r in rows:
        print(f"{r['targets']:<9}{r['n_targets']:>6,}{r['samples']:>8}"
              f"{r['per_target_generations']:>17,}{r['our_requests']:>8,}"
              f"{r['saving']:>8,.0f}x{r['prompt_aligned_requests']:>16,}")
    print(json.dumps({"benchmark": bench.identity, "scenarios": bench.n_scenarios,
                      "attributes": len(bench.attributes), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
