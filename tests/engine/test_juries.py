"""Group files: the documented format, sampling, distinct targets, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pluralign.engine.data.benchmark import (
    HELPSTEER2_ATTRIBUTES,
    HELPSTEER2_LEVELS,
    MIC_ATTRIBUTES,
    MIC_LEVELS,
)
from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.juries import (
    ALL,
    Jury,
    load_jury,
    make_jury,
    parse_jury,
    sample_group_targets,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
HS = HELPSTEER2_ATTRIBUTES


def _write(tmp_path: Path, data: Any, name: str = "groups.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def _load(tmp_path: Path, data: Any) -> Jury:
    return load_jury(_write(tmp_path, data), HS, HELPSTEER2_LEVELS)


def test_jurors_and_weights(tmp_path: Path) -> None:
    jury = _load(tmp_path, {"groups": [
        {"name": "a", "jurors": [{"id": "x", "target": {"helpfulness": 1, "verbosity": 0.5}},
                                 {"target": {"verbosity": 0}, "weight": 3}]},
        {"name": "b", "distribution": [{"target": {"coherence": 0.25}, "weight": 2}]},
    ]})
    assert jury.group_names == ("a", "b")
    assert jury.juror_ids == ("a/x", "a/1", "b/0")
    np.testing.assert_array_equal(jury.weights, [1.0, 3.0, 2.0])
    np.testing.assert_array_equal(jury.group_of, [0, 0, 1])
    # Neutral 0.5 is dropped, as in every target (a target names its non-neutral attributes).
    assert np.isnan(jury.values[0, HS.index("verbosity")])
    assert jury.values[0, HS.index("helpfulness")] == 1.0
    assert jury.values[2, HS.index("coherence")] == 0.25


def test_size_rescales_a_group(tmp_path: Path) -> None:
    jury = _load(tmp_path, {"groups": [
        {"name": "a", "size": 10, "distribution": [{"target": {"verbosity": 0}, "weight": 3},
                                                   {"target": {"verbosity": 1}, "weight": 1}]},
    ]})
    np.testing.assert_allclose(jury.weights, [7.5, 2.5])


def test_distribution_sampling_is_seeded_and_proportional(tmp_path: Path) -> None:
    group = {"name": "a", "sample": 4000, "distribution": [
        {"target": {"verbosity": 0}, "weight": 3}, {"target": {"verbosity": 1}, "weight": 1}]}
    one = _load(tmp_path, {"seed": 1, "groups": [group]})
    two = _load(tmp_path, {"seed": 1, "groups": [group]})
    other = _load(tmp_path, {"seed": 2, "groups": [group]})
    np.testing.assert_array_equal(one.values, two.values)
    assert not np.array_equal(one.values, other.values)
    share = float(np.mean(one.values[:, HS.index("verbosity")] == 0))
    assert abs(share - 0.75) < 0.03
    assert one.n_jurors == 4000 and np.all(one.weights == 1)


def test_preferences_sample_the_named_values(tmp_path: Path) -> None:
    jury = _load(tmp_path, {"groups": [{"name": "p", "sample": 3000, "preferences": {
        "helpfulness": {"1": 1, "0.75": 1}, "verbosity": "uniform"}}]})
    h = jury.values[:, HS.index("helpfulness")]
    assert set(np.unique(h)) == {0.75, 1.0}
    v = jury.values[:, HS.index("verbosity")]
    # "uniform" is over the five levels; 0.5 is neutral and so dropped (NaN).
    assert abs(float(np.mean(np.isnan(v))) - 0.2) < 0.03
    assert set(np.unique(v[~np.isnan(v)])) == {0.0, 0.25, 0.75, 1.0}
    assert np.all(np.isnan(jury.values[:, HS.index("coherence")]))


def test_default_uniform_fills_unlisted_attributes(tmp_path: Path) -> None:
    jury = _load(tmp_path, {"groups": [{"name": "p", "sample": 500, "default": "uniform",
                                        "preferences": {}}]})
    assert not np.all(np.isnan(jury.values), axis=0).any()


def test_sample_group_targets_drops_neutral() -> None:
    rng = np.random.default_rng(0)
    v = sample_group_targets(MIC_ATTRIBUTES, {"care": {0.5: 1.0, 1.0: 1.0}}, 200, rng)
    care = v[:, 0]
    assert set(np.unique(care[~np.isnan(care)])) == {1.0}
    assert 0 < np.isnan(care).sum() < 200
    assert np.all(np.isnan(v[:, 1:]))


def test_unique_targets_map_back_nan_aware() -> None:
    nan = np.nan
    vals = np.array([[1, nan, 0, nan, nan], [nan] * 5, [1, nan, 0, nan, nan], [0.25, 1, nan,
                    nan, nan]])
    jury = make_jury(HS, [("g", vals, np.ones(4), ["a", "b", "c", "d"])])
    uniq, inv = jury.unique_targets()
    assert len(uniq) == 3
    np.testing.assert_array_equal(uniq.values[inv], vals)
    assert list(jury.empty) == [False, True, False, False]


def test_group_weights_leave_out_empty_jurors() -> None:
    nan = np.nan
    a = np.array([[1, nan, nan, nan, nan], [nan] * 5])
    b = np.array([[1, nan, nan, nan, nan]])
    jury = make_jury(HS, [("a", a, np.array([2.0, 5.0]), ["x", "y"]),
                          ("b", b, np.array([3.0]), ["z"])])
    uniq, inv = jury.unique_targets()
    w = jury.group_weights(inv, len(uniq))
    row = int(inv[0])
    np.testing.assert_array_equal(w[row], [2.0, 3.0, 5.0])
    np.testing.assert_array_equal(w[int(inv[1])], [0.0, 0.0, 0.0])


def test_collective_target_is_the_weighted_mean_with_neutral_fill() -> None:
    nan = np.nan
    vals = np.array([[1, nan, nan, nan, 0], [0, nan, nan, nan, 1], [nan] * 5])
    jury = make_jury(HS, [("g", vals, np.array([3.0, 1.0, 9.0]), ["a", "b", "c"])])
    coll = jury.collective_targets()
    assert coll.labels == ("g", ALL)
    # helpfulness (3·1 + 1·0)/4; verbosity 0.25; unnamed attributes stay neutral (dropped).
    np.testing.assert_allclose(coll.values[0], [0.75, nan, nan, nan, 0.25])
    even = make_jury(HS, [("g", vals[:2], np.ones(2), ["a", "b"])]).collective_targets()
    assert np.all(np.isnan(even.values[0]))  # the mean lands on neutral everywhere


def test_documented_examples_load() -> None:
    hs = load_jury(EXAMPLES / "helpsteer2_groups.json", HS, HELPSTEER2_LEVELS)
    assert hs.group_names == ("thorough", "concise", "sceptics")
    assert hs.n_jurors == 3 + 3 + 50
    mic = load_jury(EXAMPLES / "mic_jury_10k.json", MIC_ATTRIBUTES, MIC_LEVELS)
    assert mic.n_jurors == 10_000 and mic.n_groups == 4


BAD: list[tuple[Any, str, str]] = [
    ([], "top level", ""),
    ({"groups": []}, "non-empty list", "groups"),
    ({"groups": [{"name": "a", "jurors": []}]}, "empty group", "groups[0] ('a')"),
    ({"groups": [{"name": "a", "distribution": []}]}, "empty group", "groups[0] ('a')"),
    ({"groups": [{"name": "a", "jurors": [{"target": {"kindness": 1}}]}]},
     "unknown attribute 'kindness'", "jurors[0]"),
    ({"groups": [{"name": "a", "jurors": [{"target": {"verbosity": 1.5}}]}]},
     "outside [0, 1]", "target.verbosity"),
    ({"groups": [{"name": "a", "jurors": [{"target": {"verbosity": "high"}}]}]},
     "not a number", "target.verbosity"),
    ({"groups": [{"name": "a", "jurors": [{"target": {"verbosity": 1}, "weight": 0}]}]},
     "weight must be a positive number", "jurors[0]"),
    ({"groups": [{"name": "a", "distribution": [{"target": {"verbosity": 1}, "weight": -2}]}]},
     "weight must be a positive number", "distribution[0]"),
    ({"groups": [{"name": "a", "distribution": [{"target": {"verbosity": 1}}]}]},
     "needs a 'weight'", "distribution[0]"),
    ({"groups": [{"name": "a", "jurors": [{"weight": 1}]}]}, "'target'", "jurors[0]"),
    ({"groups": [{"name": "a", "jurors": [{"target": {}}], "preferences": {}}]},
     "exactly one of", "groups[0] ('a')"),
    ({"groups": [{"jurors": [{"target": {}}]}]}, "'name'", "groups[0]"),
    ({"groups": [{"name": "a", "jurors": [{"target": {}}]},
                 {"name": "a", "jurors": [{"target": {}}]}]}, "repeated", "groups[1]"),
    ({"groups": [{"name": "ALL", "jurors": [{"target": {}}]}]}, "reserved", "groups[0]"),
    ({"groups": [{"name": "a", "preferences": {"verbosity": {"1": 1}}}]}, "'sample'",
     "groups[0] ('a')"),
    ({"groups": [{"name": "a", "sample": 0, "preferences": {}}]}, "integer >= 1", "sample"),
    ({"groups": [{"name": "a", "sample": 5, "preferences": {"verbosity": {"2": 1}}}]},
     "outside [0, 1]", "preferences.verbosity.2"),
    ({"groups": [{"name": "a", "sample": 5, "preferences": {"verbosity": {"1": 0}}}]},
     "positive", "preferences.verbosity.1"),
    ({"groups": [{"name": "a", "sample": 5, "preferences": {"tone": "uniform"}}]},
     "unknown attribute 'tone'", "preferences.tone"),
    ({"groups": [{"name": "a", "sample": 5, "jurors": [{"target": {}}]}]},
     "'sample' needs", "sample"),
    ({"groups": [{"name": "a", "jurors": [{"target": {}}], "colour": 1}]}, "unknown key",
     "colour"),
    ({"groups": [{"name": "a", "jurors": [{"id": "x", "target": {}}, {"id": "x", "target": {}}
                                          ]}]}, "repeated", "id"),
]


@pytest.mark.parametrize(("data", "message", "where"), BAD)
def test_malformed_group_files_name_file_record_and_field(
    tmp_path: Path, data: Any, message: str, where: str
) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(InputError) as err:
        load_jury(path, HS, HELPSTEER2_LEVELS)
    text = str(err.value)
    assert message in text
    assert str(path) in text
    assert where in text


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_jury(tmp_path / "missing.json", HS, HELPSTEER2_LEVELS)
    bad = tmp_path / "bad.json"
    bad.write_text("{groups: ")
    with pytest.raises(InputError, match="not valid JSON"):
        load_jury(bad, HS, HELPSTEER2_LEVELS)


def test_parse_jury_without_a_file() -> None:
    jury = parse_jury({"groups": [{"name": "a", "jurors": [{"target": {"verbosity": 0}}]}]}, HS,
                      HELPSTEER2_LEVELS)
    assert jury.n_jurors == 1 and jury.source == "groups"


def test_make_jury_checks_its_arrays() -> None:
    one = np.array([[1.0, np.nan, np.nan, np.nan, 0.5]])
    jury = make_jury(HS, [("g", one, np.ones(1), ["a"])])
    assert np.isnan(jury.values[0, 4])  # exactly neutral is dropped here too
    with pytest.raises(InputError, match="1 targets, 2 weights"):
        make_jury(HS, [("g", one, np.ones(2), ["a"])])
    with pytest.raises(InputError, match="positive"):
        make_jury(HS, [("g", one, np.zeros(1), ["a"])])
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        make_jury(HS, [("g", one * 2, np.ones(1), ["a"])])
    with pytest.raises(InputError, match="empty group"):
        make_jury(HS, [("g", np.zeros((0, 5)), np.ones(0), [])])
    with pytest.raises(InputError, match="at least one group"):
        make_jury(HS, [])


def test_the_snippets_in_the_docs_are_valid() -> None:
    import re

    from pluralign.engine.pluralism.distributional import parse_distributions

    text = (EXAMPLES.parent / "juries.md").read_text()
    groups, question = (json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S))
    assert parse_jury(groups, HS, HELPSTEER2_LEVELS).n_groups == 3
    assert len(parse_distributions({"questions": [question]})) == 1
