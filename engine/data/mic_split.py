"""The MIC eval/train split as the authors of the steerable-pluralism paper (§3.3) published it
(their ``load_mic.py`` and
``stratified_sampling``), so ``MIC.csv`` yields their eval and train scenarios.

Their procedure, restated: questions are ordered by question text (a pandas ``groupby`` sorts
its keys); every response contributes one row of labels; for each attribute/level pair the
number of responses at that level is counted, and ``n = min(smallest count, 20)``. Pairs are
visited from the rarest (NumPy's default ``argsort`` of the counts); for each, the questions
with a response at that level, taken in the iteration order of a Python ``set`` of their
indices, minus those already used, give eval its first ``n`` and train the next ``n``.
"""

from __future__ import annotations

import numpy as np

from pluralign.engine.data.benchmark import Benchmark

PER_PAIR_CAP = 20
"""Most scenarios per attribute/level pair the published procedure gives each split."""


def published_order(bench: Benchmark) -> list[int]:
    """Scenario indices in the authors' question order (sorted by question text)."""
    return sorted(range(bench.n_scenarios), key=lambda i: bench.scenarios[i].prompt)


def published_split(bench: Benchmark) -> dict[str, list[int]]:
    """``{"eval": [...], "train": [...]}``: indices into ``bench.scenarios``, in the order the
    authors' files list them."""
    order = published_order(bench)
    rows: list[list[float]] = []
    a_to_q: list[int] = []
    for q, s in enumerate(order):
        for label in bench.scenarios[s].labels:
            rows.append([float(label[a]) for a in bench.attributes])
            a_to_q.append(q)
    data = np.array(rows, dtype=np.float64)
    n_levels = len(bench.levels)
    values = [round(i / (n_levels - 1), 2) for i in range(n_levels)]
    counts = np.array([int(np.sum(data[:, att] == v))
                       for att in range(len(bench.attributes)) for v in values])
    n_each = int(min(counts.min(), PER_PAIR_CAP))
    eval_q: list[int] = []
    train_q: list[int] = []
    seen: set[int] = set()
    for idx in np.argsort(counts):
        att, lev = int(idx) // n_levels, int(idx) % n_levels
        hits = np.where(data[:, att] == values[lev])[0]
        # The authors iterate a set of question indices: its order is part of the procedure.
        questions = [q for q in {a_to_q[int(a)] for a in hits} if q not in seen]
        eval_q.extend(questions[:n_each])
        train_q.extend(questions[n_each:2 * n_each])
        seen.update(eval_q)
        seen.update(train_q)
    return {"eval": [order[q] for q in eval_q], "train": [order[q] for q in train_q]}
