"""Bad input is refused before any work, in one line naming file, record and field (through
the real command line). Each case prints its error line; the cache stays untouched."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from pluralign.jobs.cli import main

BENCH = "synthetic:S=12,A=3,L=5,seed=1"
ATTRS = ("a0", "a1", "a2")
DEEP = "[" * 100_000 + "]" * 100_000


def refused(capsys: Any, argv: list[str], *needles: str, rc: int = 2) -> str:
    """Run ``argv``; assert exit ``rc`` and one error line holding every needle."""
    assert main(argv) == rc
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    with capsys.disabled():
        print(f"\n  {' '.join(a if len(a) < 60 else a[:57] + '...' for a in argv[:6])} ...\n"
              f"    -> {lines[-1] if lines else err!r}")
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def sweep(tmp: Path, *extra: str, out: str | None = None) -> list[str]:
    return ["sweep", "--benchmark", BENCH, "--scorer", "ridge", "--cache", str(tmp / "cache"),
            "--out", str(tmp / "run") if out is None else out, *extra]


def untouched(tmp: Path) -> None:
    """Before any work: nothing was scored into the cache."""
    assert not (tmp / "cache").exists() or not any((tmp / "cache").iterdir())


# ---------------------------------------------------------------- output paths


def test_out_is_an_existing_file(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "taken"
    f.write_text("x")
    refused(capsys, sweep(tmp_path, out=str(f)), str(f), "'--out'", "exists and is a file")
    untouched(tmp_path)


def test_out_is_empty(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, sweep(tmp_path, out=""), "'--out'", "empty path")
    untouched(tmp_path)


def test_out_under_a_file(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "f").write_text("x")
    refused(capsys, sweep(tmp_path, out=str(tmp_path / "f" / "run")), "cannot be created")
    untouched(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_out_not_writable(tmp_path: Path, capsys: Any) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    refused(capsys, sweep(tmp_path, out=str(ro / "run")), "not writable")
    untouched(tmp_path)


def test_align_out_is_a_folder(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, ["align", "--benchmark", BENCH, "--target", '{"a0": 1}', "--cache",
                     str(tmp_path / "cache"), "--out", str(tmp_path)],
            "exists and is a folder")
    untouched(tmp_path)


def test_align_out_is_empty(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, ["align", "--benchmark", BENCH, "--target", '{"a0": 1}', "--cache",
                     str(tmp_path / "cache"), "--out", ""], "empty path")


def jury(tmp: Path, groups: Path | str, out: str | None = None) -> list[str]:
    return ["jury", "--benchmark", BENCH, "--scorer", "ridge", "--cache", str(tmp / "cache"),
            "--groups", str(groups), "--out", str(tmp / "jury") if out is None else out]


def groups_file(tmp: Path, data: Any, name: str = "groups.json") -> Path:
    p = tmp / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


GOOD = {"groups": [{"name": "g", "jurors": [{"target": {"a0": 1}}]}]}


def test_jury_out_is_an_existing_file(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "taken"
    f.write_text("x")
    refused(capsys, jury(tmp_path, groups_file(tmp_path, GOOD), out=str(f)),
            "exists and is a file")
    untouched(tmp_path)


def test_distribution_out_is_empty(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, ["distribution", "--file", str(tmp_path / "d.json"), "--out", ""],
            "empty path")


# ---------------------------------------------------------------- group files, before scoring


def test_jury_groups_missing_is_refused_before_scoring(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, jury(tmp_path, tmp_path / "nope.json"), "nope.json", "file not found")
    untouched(tmp_path)


def test_jury_groups_unknown_attribute_is_refused_before_scoring(
        tmp_path: Path, capsys: Any) -> None:
    bad = {"groups": [{"name": "g", "jurors": [{"target": {"nope": 1}}]}]}
    refused(capsys, jury(tmp_path, groups_file(tmp_path, bad)), "groups.json", "groups[0]",
            "nope")
    untouched(tmp_path)


def test_jury_groups_repeated_key(tmp_path: Path, capsys: Any) -> None:
    text = '{"groups": [{"name": "g", "jurors": [{"target": {"a0": 1, "a0": 0}}]}]}'
    refused(capsys, jury(tmp_path, groups_file(tmp_path, text)), "groups.json", "'a0'",
            "appears twice")
    untouched(tmp_path)


def test_jury_groups_nested_too_deeply(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, jury(tmp_path, groups_file(tmp_path, DEEP)), "groups.json",
            "nested too deeply")
    untouched(tmp_path)


def test_jury_sample_beyond_memory(tmp_path: Path, capsys: Any) -> None:
    bad = {"groups": [{"name": "many", "distribution": [{"target": {"a0": 1}, "weight": 1}],
                       "sample": 10**9}]}
    refused(capsys, jury(tmp_path, groups_file(tmp_path, bad)), "groups[0]", "'sample'",
            "would need about 111.8 GiB of memory")
    untouched(tmp_path)


def test_jury_preferences_sample_beyond_memory(tmp_path: Path, capsys: Any) -> None:
    bad = {"groups": [{"name": "many", "preferences": {"a0": "uniform"}, "sample": 10**9}]}
    refused(capsys, jury(tmp_path, groups_file(tmp_path, bad)), "'sample'", "would need")
    untouched(tmp_path)


# ---------------------------------------------------------------- targets


def test_inline_target_with_a_repeated_key(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, sweep(tmp_path, "--targets", '{"a0": 1, "a0": 0}'), "inline target",
            "'a0'", "appears twice")
    untouched(tmp_path)


def test_inline_key_value_target_with_a_repeated_key(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, sweep(tmp_path, "--targets", "a0=1,a0=0"), "'a0'", "appears twice")
    untouched(tmp_path)


def test_empty_inline_target_list(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, sweep(tmp_path, "--targets", "[]"), "names no target")
    untouched(tmp_path)


def test_target_file_with_an_empty_list(tmp_path: Path, capsys: Any) -> None:
    f = groups_file(tmp_path, [], "targets.json")
    refused(capsys, sweep(tmp_path, "--targets", str(f)), "targets.json", "empty target list")
    untouched(tmp_path)


def test_target_file_with_a_repeated_key(tmp_path: Path, capsys: Any) -> None:
    f = groups_file(tmp_path, '[{"a1": 0.5, "a1": 1}]', "targets.json")
    refused(capsys, sweep(tmp_path, "--targets", str(f)), "targets.json", "'a1'",
            "appears twice")
    untouched(tmp_path)


def test_target_file_nested_too_deeply(tmp_path: Path, capsys: Any) -> None:
    f = groups_file(tmp_path, DEEP, "targets.json")
    refused(capsys, sweep(tmp_path, "--targets", str(f)), "targets.json", "nested too deeply")
    untouched(tmp_path)


# ---------------------------------------------------------------- benchmarks


def hs2_dir(tmp: Path, label: float) -> Path:
    d = tmp / "data"
    (d / "helpsteer2").mkdir(parents=True)
    labels = [{"helpfulness": 0.25, "correctness": 0.5, "coherence": 1, "complexity": 0,
               "verbosity": 0.75}, {"helpfulness": label, "correctness": 0.5, "coherence": 1,
                                    "complexity": 0, "verbosity": 0.75}]
    rec = [{"prompt": f"p{i}", "responses": ["a", "b"], "labels": labels} for i in range(4)]
    for split in ("eval", "train"):
        (d / "helpsteer2" / f"{split}.json").write_text(json.dumps(rec))
    return d


def test_helpsteer2_label_off_the_level_grid(tmp_path: Path, capsys: Any) -> None:
    d = hs2_dir(tmp_path, 0.3)
    refused(capsys, ["sweep", "--benchmark", "helpsteer2", "--data", str(d), "--scorer",
                     "constant", "--cache", str(tmp_path / "cache"), "--out",
                     str(tmp_path / "run")],
            "eval.json", "record 0 (response 1)", "'labels.helpfulness'", "label 0.3 is off")
    untouched(tmp_path)


def test_benchmark_file_nested_too_deeply(tmp_path: Path, capsys: Any) -> None:
    f = groups_file(tmp_path, DEEP, "bench.json")
    refused(capsys, ["sweep", "--benchmark", str(f), "--scorer", "constant", "--cache",
                     str(tmp_path / "cache"), "--out", str(tmp_path / "run")],
            "bench.json", "nested too deeply")
    untouched(tmp_path)


def with_bench(argv: list[str], bench: str) -> list[str]:
    return [bench if a == BENCH else a for a in argv]


def test_synthetic_benchmark_beyond_memory(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, with_bench(sweep(tmp_path), "synthetic:S=100000000"),
            "synthetic:S=100000000", "'S'", "would need about 154.6 GiB of memory")
    untouched(tmp_path)


def test_synthetic_benchmark_with_huge_shape(tmp_path: Path, capsys: Any) -> None:
    refused(capsys, with_bench(sweep(tmp_path), "synthetic:S=1000000,A=5000,R=2-26"), "'S'",
            "would need")
    untouched(tmp_path)
