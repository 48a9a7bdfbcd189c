"""Sharded re-alignment on a local Ray: decisions/s with 1, 2 and 4 workers.

A MIC-shaped synthetic benchmark of ``--scenarios`` (default 10,000) scenarios x all 117,649
targets is re-aligned (weighted score included) as Ray tasks over blocks of targets, each task
on one thread; the result is checked equal to the local path. A *decision* is one (scenario,
target) choice. Scaling efficiency over w workers = rate(w) / (w x rate(1)).

Extrapolation to 100,000 scenarios on N nodes: the work is linear in scenarios x targets and
shards share nothing but the inputs (the benchmark and predictions, ~20 MB at 100,000
scenarios), so time(N nodes of c cores) ~ 100,000 x 117,649 / (rate per worker x N x c x
efficiency), with the rate and efficiency measured here; the driver's combine is O(targets).
The last line is one JSON object. Run: ``python benchmarks/realign_sharded.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time

import numpy as np

from pluralign.engine.align.realign import realign
from pluralign.engine.data.synthetic import noisy_predictions, synthetic_benchmark
from pluralign.engine.data.targets import all_targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenarios", type=int, default=10_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--memory-budget", default="256M",
                        help="per-task memory budget (default 256M)")
    parser.add_argument("--nodes", type=int, default=8, help="nodes of the extrapolation")
    parser.add_argument("--cores", type=int, default=16, help="cores per node, extrapolation")
    args = parser.parse_args()
    import os

    import ray

    from pluralign.engine.align.realign import parse_memory_budget
    from pluralign.jobs.sharded import realign_sharded

    budget = parse_memory_budget(args.memory_budget)
    bench = synthetic_benchmark(args.scenarios, (2, 4), 6, 7, seed=0)
    pred = noisy_predictions(bench, 0.25, seed=0)
    targets = all_targets(bench.attributes, bench.levels)
    decisions = bench.n_scenarios * len(targets)
    print(f"{bench.n_scenarios:,} scenarios ({bench.n_responses:,} responses) x "
          f"{len(targets):,} targets = {decisions:.3g} decisions; machine: "
          f"{os.cpu_count()} cores, shared with other work while measured", flush=True)
    t0 = time.perf_counter()
    local = realign(bench, pred, targets, weighted=True, memory_budget=budget)
    local_s = time.perf_counter() - t0
    print(f"local (numba on all cores, budget {budget / 2**20:.0f} MiB): {local_s:.1f} s, "
          f"{decisions / local_s:.3g} decisions/s", flush=True)
    rows = []
    workers = [int(w) for w in args.workers.split(",")]
    tmp = tempfile.mkdtemp(prefix="plshard", dir="/tmp")
    from pluralign.jobs.ray_runtime import init_local_ray

    init_local_ray(num_cpus=max(workers), object_store_memory=200 * 2**20, _temp_dir=tmp,
                   runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}})
    try:
        realign_sharded(bench.subset(20), pred[:bench.offsets[20]], targets, shards=max(workers),
                        memory_budget=budget)  # start the workers, compile the kernels
        for w in workers:
            t0 = time.perf_counter()
            res = realign_sharded(bench, pred, targets, shards=w, weighted=True,
                                  memory_budget=budget)
            sec = time.perf_counter() - t0
            same = bool(np.array_equal(res.correct, local.correct) and
                        np.array_equal(res.weighted, local.weighted, equal_nan=True))
            rate = decisions / sec
            rows.append({"workers": w, "seconds": sec, "decisions_per_s": rate,
                         "per_worker": rate / w, "equal_to_local": same})
            print(f"{w} worker(s): {sec:.1f} s, {rate:.3g} decisions/s "
                  f"({rate / w:.3g} per worker), equal to local: {same}", flush=True)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0]["decisions_per_s"] / rows[0]["workers"]
    for r in rows:
        r["efficiency"] = r["decisions_per_s"] / (r["workers"] * base)
        print(f"scaling efficiency at {r['workers']} worker(s): {r['efficiency']:.2f}")
    eff2 = next((r["efficiency"] for r in rows if r["workers"] == 2), 1.0)
    big = 100_000 * len(targets)
    workers_total = args.nodes * args.cores
    est = big / (base * workers_total * min(1.0, eff2))
    print(f"extrapolated: 100,000 scenarios x {len(targets):,} targets = {big:.3g} decisions "
          f"on {args.nodes} nodes x {args.cores} cores at {base:.3g} decisions/s per worker "
          f"and efficiency {min(1.0, eff2):.2f}: ~{est:.0f} s")
    print(json.dumps({"scenarios": bench.n_scenarios, "targets": len(targets),
                      "local_seconds": round(local_s, 2),
                      "runs": [{k: (round(v, 3) if isinstance(v, float) else v)
                                for k, v in r.items()} for r in rows],
                      "extrapolated_100k_seconds": round(est, 1),
                      "extrapolation_nodes": args.nodes, "extrapolation_cores": args.cores}))


if __name__ == "__main__":
    main()
