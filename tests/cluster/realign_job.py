"""A Ray job for the rig: re-alignment sharded over the worker hosts equals the local result
bit for bit. Prints one JSON line: whether it did, and the hosts the shards ran on."""

from __future__ import annotations

import json

import numpy as np
import ray

from pluralign.engine.align.realign import realign
from pluralign.engine.data.synthetic import noisy_predictions, synthetic_benchmark
from pluralign.engine.data.targets import all_targets
from pluralign.jobs.sharded import realign_sharded


def main() -> None:
    ray.init(address="auto", log_to_driver=False)
    bench = synthetic_benchmark(120, (2, 4), 6, 5, seed=2)
    pred = noisy_predictions(bench, 0.3, seed=2)
    targets = all_targets(bench.attributes, bench.levels)
    local = realign(bench, pred, targets, weighted=True)
    sharded = realign_sharded(bench, pred, targets, shards=2, weighted=True, num_cpus=1,
                              resources={"api_client": 1})
    same = (np.array_equal(sharded.counted, local.counted)
            and np.array_equal(sharded.correct, local.correct)
            and np.array_equal(sharded.weighted, local.weighted, equal_nan=True)
            and np.array_equal(sharded.closeness, local.closeness, equal_nan=True))
    from ray.util.state import list_tasks

    nodes = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
    tasks = list_tasks(filters=[("name", "=", "_cells")], detail=True, raise_on_missing_output=False)
    hosts = sorted({nodes.get(t.node_id, "?") for t in tasks if t.node_id})
    print("realign-result: " + json.dumps({"equal": same, "hosts": hosts, "shards": 2}),
          flush=True)


if __name__ == "__main__":
    main()
