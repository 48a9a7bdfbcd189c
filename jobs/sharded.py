"""Re-alignment sharded over Ray tasks: blocks of targets (first-half rows of the target
grid), each task returning per-cell counted/correct/weighted sums that the driver joins
exactly (:func:`pluralign.engine.align.realign.combine`).

Every cell is computed whole by one task, over the scenarios in order, so the result equals
the local path bit for bit. The benchmark and predictions go to the object store once; each
task builds the label side of its own rows only (its memory follows ``memory_budget``).
"""

from __future__ import annotations

import itertools
from typing import Any, Protocol

import numpy as np

from pluralign.engine.align.realign import (
    AlignResult,
    CellSums,
    LabelIndex,
    combine,
    parse_memory_budget,
    realign,
    realign_cells,
)
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.targets import TargetSet
from pluralign.engine.errors import InputError
from pluralign.jobs.ray_runtime import init_local_ray

SHARD_THRESHOLD = 2_000_000_000
"""(responses x targets) above which a sweep on Ray shards re-alignment by itself."""


def _cells(bench: Benchmark, predictions: np.ndarray, targets: TargetSet, rows: tuple[int, int],
           weighted: bool, memory_budget: int | None) -> CellSums:
    index = LabelIndex(bench, targets, memory_budget=memory_budget,
                       resident=False if memory_budget is None else None)
    return realign_cells(index, predictions, weighted=weighted, rows=rows)


def row_ranges(n1: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous, near-equal ranges of first-half rows (fewer if n1 is small)."""
    cuts = np.linspace(0, n1, min(max(1, shards), n1) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(cuts) if b > a]


def realign_sharded(bench: Benchmark, predictions: np.ndarray, targets: TargetSet, *,
                    shards: int, weighted: bool = False, memory_budget: int | None = None,
                    num_cpus: float = 1, **options: Any) -> AlignResult:
    """:func:`realign` as ``shards`` Ray tasks; needs a connected Ray runtime.

    The tasks are spread over the cluster's hosts (each holds one shard's label side, not the
    first host with free CPUs all of them); ``options`` go to the task's ``.options()``, for
    instance ``resources={"api_client": 1}`` to keep them on the worker hosts."""
    import ray

    index = LabelIndex(bench, targets, resident=False)  # the factor only: nothing S x T
    task = ray.remote(_cells).options(
        **{"num_cpus": num_cpus, "scheduling_strategy": "SPREAD", **options})
    b_ref, p_ref, t_ref = ray.put(bench), ray.put(np.asarray(predictions)), ray.put(targets)
    refs = [task.remote(b_ref, p_ref, t_ref, r, weighted, memory_budget)
            for r in row_ranges(index.factor.n1, shards)]
    parts: list[Any] = ray.get(refs)
    return combine(index, parts, weighted=weighted)


class RealignOptions(Protocol):
    """How a command re-aligns: a job's config, or parsed flags."""

    @property
    def shards(self) -> int | None:
        """Ray tasks over blocks of targets (None: automatic above the threshold on Ray)."""

    @property
    def memory_budget(self) -> int | str | None:
        """Memory one re-alignment may hold (bytes, or 512M, 2G, 25%); None: 1/8 of RAM."""


def realign_for_args(args: RealignOptions, bench: Benchmark, predictions: np.ndarray,
                     targets: TargetSet, *, weighted: bool = False) -> AlignResult:
    """Local re-alignment within ``memory_budget``, or sharded over Ray with ``shards`` (or by
    itself above the threshold when Ray is already running)."""
    budget = parse_memory_budget(getattr(args, "memory_budget", None))
    shards = getattr(args, "shards", None)
    if shards is not None and shards < 1:
        raise InputError("`shards` must be at least 1", field="shards")
    big = bench.n_responses * len(targets) > SHARD_THRESHOLD
    ray_up = False
    if shards is None and big:
        try:
            import ray

            ray_up = ray.is_initialized()
        except ImportError:
            ray_up = False
        if ray_up:
            cpus = ray.cluster_resources().get("CPU", 1)  # type: ignore[no-untyped-call]
            shards = max(1, int(cpus))
    if not shards or (shards == 1 and not ray_up):
        return realign(bench, predictions, targets, weighted=weighted, memory_budget=budget)
    try:
        import ray
    except ImportError:
        raise InputError("`shards` needs Ray: pip install 'pluralign[distributed]'",
                         field="shards") from None
    if not ray.is_initialized():
        init_local_ray()
    return realign_sharded(bench, predictions, targets, shards=shards, weighted=weighted,
                           memory_budget=budget)
