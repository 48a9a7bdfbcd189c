"""``pluralign annotators`` prints aligned tables (like ``jury`` and ``sweep``), not JSON
lines, and writes the same files as before: summary.json, groups.parquet, selection.parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pluralign.jobs.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def _table(lines: list[str], head_start: str) -> list[str]:
    """The header line starting with ``head_start`` and the rows under it, up to a blank line
    (the rule under ALL left out)."""
    i = next(k for k, line in enumerate(lines) if line.startswith(head_start))
    out = []
    for line in lines[i:]:
        if not line.strip():
            break
        if not line.startswith("---"):
            out.append(line)
    return out


def _documented(out: Path) -> list[str]:
    return ["annotators", "--path", str(EXAMPLES / "ratings.csv"), "--scale", "1,5",
            "--demographics", str(EXAMPLES / "people.csv"), "--group-by", "country",
            "--alpha", "0,1,inf", "--choices", str(EXAMPLES / "picks.json"), "--out", str(out)]


def test_annotators_prints_aligned_tables(tmp_path: Path, capsys: Any) -> None:
    assert main(_documented(tmp_path / "ann")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert not any(line.lstrip().startswith("{") for line in lines)  # no JSON lines
    assert lines[1].startswith("6 annotators, 3 scenarios, 41 ratings from ")

    selection = _table(lines, "group ")
    head = selection[0]
    assert head.split() == ["group", "jurors", "scenarios", "w(a=0)", "w(a=1)", "w(a=inf)"]
    assert [r.split()[0] for r in selection[1:]] == ["ALL", "country=DE", "country=JP"]
    assert all(len(r) == len(head) for r in selection[1:])  # right-aligned under the header
    # ALL: utilitarian optimum .75, .667 and .65 (a6 did not rate every job-offer response)
    all_row = selection[1].split()
    assert all_row[1:4] == ["6", "3", f"{(0.75 + 4 / 6 + 0.65) / 3:.3f}"]
    assert all_row[-2:] == ["0.417", "(0.33)"]  # the Rawlsian optimum differs in 1 of 3

    system_start = lines.index(next(line for line in lines if line.startswith("the system's")))
    system = _table(lines[system_start:], "group ")
    assert system[0].split() == ["group", "served", "w(a=0)", "w(a=1)", "w(a=inf)", ">0.5"]
    assert all(len(r) == len(system[0]) for r in system[1:])
    assert system[3].split() == ["country=JP", "3", "0.306", "0.303", "0.250", "0.000"]


def test_annotators_files_are_unchanged_by_the_table(tmp_path: Path) -> None:
    from pluralign.engine.data.field_data import load_ratings
    from pluralign.engine.pluralism.annotators import evaluate

    out = tmp_path / "ann"
    assert main(_documented(out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {"dataset", "path", "group_by", "alphas", "tau", "jurors", "scenarios", "ratings",
            "groups"} <= set(summary)
    ratings = load_ratings(EXAMPLES / "ratings.csv", (1, 5), EXAMPLES / "people.csv")
    result = evaluate(ratings, (0.0, 1.0, float("inf")), "country",
                      json.loads((EXAMPLES / "picks.json").read_text()), 0.5)
    assert summary["groups"] == result["groups"]  # the same numbers, to the bit
    assert pq.read_table(out / "groups.parquet").to_pylist() == result["groups"]
    assert pq.read_table(out / "selection.parquet").num_rows == len(result["selection"]) == 27


def test_annotators_table_without_utilitarian_alpha_or_choices(tmp_path: Path,
                                                               capsys: Any) -> None:
    f = tmp_path / "r.csv"
    # q rated only one response of s: a group of q alone has no complete juror (n/a)
    f.write_text("annotator,scenario,response,rating\np,s,x,5\np,s,y,1\nq,s,x,2\n")
    people = tmp_path / "people.csv"
    people.write_text("annotator,team\np,red\nq,blue\n")
    assert main(["annotators", "--path", str(f), "--demographics", str(people), "--group-by",
                 "team", "--alpha", "0.5,2", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "the system's" not in out and "differs" not in out  # no a=0, no --choices
    rows = _table(out.splitlines(), "group ")
    assert rows[0].split() == ["group", "jurors", "scenarios", "w(a=0.5)", "w(a=2)"]
    assert rows[1].split() == ["ALL", "2", "1", "1.000", "1.000"]
    assert rows[2].split() == ["team=blue", "1", "0", "n/a", "n/a"]
    assert all(len(r) == len(rows[0]) for r in rows[1:])
