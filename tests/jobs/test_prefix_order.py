"""Prefix-aware ordering: a permutation of the items (same keys, same requests), with requests
that share leading messages next to each other."""

from __future__ import annotations

import itertools
import random

from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.jobs.configs import LLMConfig
from pluralign.jobs.llm_scoring import build_judge
from pluralign.jobs.prefix_order import prefix_order, prompt_path, shared_prefix_share


def test_ordering_groups_shared_prefixes_and_changes_no_identity() -> None:
    bench = synthetic_benchmark(n_scenarios=8, responses=(2, 3), n_attributes=3, n_levels=5,
                                seed=2, attributes=("a", "b", "c"), name="prefix")
    judge = build_judge(bench, None, "regression", LLMConfig(model="m", few_shot=False))
    items = judge.items(range(bench.n_scenarios), 2)
    random.Random(0).shuffle(items)
    ordered = prefix_order(judge, items)
    assert sorted(it.key for it in ordered) == sorted(it.key for it in items)
    assert {it.key: judge.request(it) for it in ordered} == \
        {it.key: judge.request(it) for it in items}
    paths = [prompt_path(judge, it) for it in ordered]
    assert paths == sorted(paths)  # equal leading messages are consecutive
    assert shared_prefix_share(judge, ordered) > shared_prefix_share(judge, items)
    # Samples of one prompt stay together, in their original relative order.
    for a, b in itertools.pairwise(ordered):
        if prompt_path(judge, a) == prompt_path(judge, b):
            assert items.index(a) < items.index(b)
