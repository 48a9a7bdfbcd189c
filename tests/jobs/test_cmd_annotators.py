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


def test_annotators_prints_optimal_and_system_welfare_in_one_table(tmp_path: Path,
                                                                   capsys: Any) -> None:
    assert main(_documented(tmp_path / "ann")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert not any(line.lstrip().startswith("{") for line in lines)  # no JSON lines
    assert lines[1].startswith("6 annotators, 3 scenarios, 41 ratings from ")
    table = _table(lines, "group ")
    head = table[0]
    assert head.split() == ["group", "jurors", "scenarios", "served", ">0.5", "a", "optimal",
                            "system", "differs"]
    assert [r.split()[0] for r in table[1::3]] == ["ALL", "country=DE", "country=JP"]
    assert all(len(r) <= len(head) for r in table[1:])
    # ALL, a=0: the utilitarian picks (practical, the .75 response, the .65 one) scored as the
    # system's are: each juror's mean utility of the picks they rated, then the mean.
    all_row = table[1].split()
    assert all_row[:5] == ["ALL", "6", "3", "6", "0.500"]
    assert all_row[5:] == ["0", "0.667", "0.611"]  # optimal >= system, the same aggregation
    assert table[3].split() == ["inf", "0.500", "0.250", "0.33"]  # Rawlsian optimum differs
    assert table[7].split() == ["country=JP", "3", "3", "3", "0.000", "0", "0.931", "0.306"]


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
    assert rows[0].split() == ["group", "jurors", "scenarios", "a", "optimal"]
    # p alone rated both responses and picks x; scored over every juror who rated x (p 1, q .25):
    # w_0.5 = ((1 + .5) / 2)^2, w_2 = the harmonic mean 2 / (1 + 4)
    assert [r.split() for r in rows[1:3]] == [["ALL", "2", "1", "0.5", "0.562"], ["2", "0.400"]]
    assert rows[3].split() == ["team=blue", "1", "0", "0.5", "n/a"]
    assert all(len(r) == len(rows[0]) for r in rows[1:])
