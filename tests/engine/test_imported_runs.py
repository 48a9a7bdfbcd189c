"""The research code's per-target runs and choice-only outputs, imported into the choice
cache: counted/correct equal the reference rule applied to the same choices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pluralign.engine.align.align_loop import label_correct, predicted_choice, target_scale
from pluralign.engine.align.realign import accuracy_from_choices
from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.data.targets import from_dicts
from pluralign.engine.errors import InputError
from pluralign.engine.scorers.research_runs import import_runs
from pluralign.engine.store.choices import ChoiceCache


def _bench():
    return synthetic_benchmark(n_scenarios=25, responses=(2, 4), n_attributes=3, n_levels=5,
                               seed=7, attributes=("care", "fairness", "liberty"))


def _items(bench, rng, target, choice_only: bool):
    items = []
    for sc in bench.scenarios:
        out: dict = {"reasoning": "r", "choice_info": {}}
        if choice_only:
            out["selected_response_index"] = int(rng.integers(len(sc.responses)))
        else:  # only the target's attributes, as their sampled-target regression runs write
            out["choice_info"]["predictions"] = [
                {a: round(float(rng.random()), 2) for a in target} for _ in sc.responses]
            out["selected_response_index"] = 0
        items.append({"input": {"prompt": sc.prompt, "responses": list(sc.responses),
                                "labels": [dict(lab) for lab in sc.labels]}, "output": out})
    return items


def test_per_target_and_choice_only_runs_fill_the_choice_cache(tmp_path: Path) -> None:
    bench, rng = _bench(), np.random.default_rng(1)
    t1, t2 = {"care": 1.0, "liberty": 0.25}, {"fairness": 0.0}
    a = tmp_path / "runs" / "a"
    a.mkdir(parents=True)
    items_a = _items(bench, rng, t1, choice_only=False)
    (a / "input_output.json").write_text(json.dumps(items_a))
    (a / "target.json").write_text(json.dumps(t1))
    b = tmp_path / "runs" / "b"
    (b / ".hydra").mkdir(parents=True)
    items_b = _items(bench, rng, t2, choice_only=True)
    (b / "input_output.json").write_text(json.dumps(items_b))
    (b / ".hydra" / "config.yaml").write_text("adm: x\nalignment_target: sampled_mic/t2\n")
    tdir = tmp_path / "alignment_targets"
    (tdir / "sampled_mic").mkdir(parents=True)
    (tdir / "sampled_mic" / "t2.json").write_text(json.dumps(t2))

    cache = ChoiceCache(tmp_path / "cache")
    ident, keys = import_runs(bench, tmp_path / "runs", cache, targets_dir=tdir)
    targets = from_dicts("runs", bench.attributes, [t1, t2])
    assert keys == targets.json_all()
    chosen = cache.choices(bench, ident, keys, 1)
    want_a = [predicted_choice(np.array([[p[k] for k in t1] for p in it["output"]
                                         ["choice_info"]["predictions"]]),
                               list(enumerate(t1.values()))) for it in items_a]
    want_b = [it["output"]["selected_response_index"] for it in items_b]
    assert chosen[:, 0].tolist() == want_a and chosen[:, 1].tolist() == want_b
    res = accuracy_from_choices(bench, chosen, targets)
    scale = target_scale(bench, targets)
    units = np.round(bench.labels * scale).astype(np.int64)
    for t, want in enumerate((want_a, want_b)):
        unit_items = [(bench.attributes.index(k), round(v * scale))
                      for k, v in targets.target(t).items()]
        counted = correct = 0
        for s in range(bench.n_scenarios):
            lo, hi = bench.offsets[s], bench.offsets[s + 1]
            good = label_correct(units[lo:hi], unit_items)
            if good is not None:
                counted += 1
                correct += want[s] in good
        assert (int(res.counted[t]), int(res.correct[t])) == (counted, correct)
    # a second import writes nothing new
    parts = len(cache.parts())
    assert import_runs(bench, tmp_path / "runs", cache, targets_dir=tdir)[0] == ident
    assert len(cache.parts()) == parts


def test_run_without_a_known_target_says_where_it_looked(tmp_path: Path) -> None:
    bench = _bench()
    (tmp_path / "input_output.json").write_text(json.dumps(_items(
        bench, np.random.default_rng(0), {"care": 1.0}, choice_only=True)))
    with pytest.raises(InputError, match=r"target\.json and \.hydra/config\.yaml"):
        import_runs(bench, tmp_path, ChoiceCache(tmp_path / "c"))


def test_bad_selected_index_names_the_record(tmp_path: Path) -> None:
    bench = _bench()
    items = _items(bench, np.random.default_rng(0), {"care": 1.0}, choice_only=True)
    items[3]["output"]["selected_response_index"] = 9
    (tmp_path / "input_output.json").write_text(json.dumps(items))
    (tmp_path / "target.json").write_text('{"care": 1.0}')
    with pytest.raises(InputError, match=r"record 3 .*selected_response_index"):
        import_runs(bench, tmp_path, ChoiceCache(tmp_path / "c"))
