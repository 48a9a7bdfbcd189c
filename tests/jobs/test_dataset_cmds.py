"""The commands on the field's datasets in their published layouts (tests/layouts.py): what
they print and record (skipped records in the output and the manifest), and the one line,
exit 2, where a layout cannot give what was asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pluralign.engine.store.manifest import read_manifest
from pluralign.jobs.cli import main
from tests import layouts
from tests.fake_openai import FAKE_KEY_ENV, fake_key, make_fake_server

__all__ = ["fake_key", "make_fake_server"]


def test_opinions_on_opinionqa_offers_no_refusal(tmp_path: Path, fake_key: str,
                                                 make_fake_server: Any, capsys: Any) -> None:
    server = make_fake_server()
    d = layouts.opinionqa_w26(tmp_path)
    out = tmp_path / "o"
    assert main(["opinions", "--opinionqa", str(d), "--group-by", "POLPARTY", "--samples", "2",
                 "--backend", "openai", "--base-url", server.url, "--model", "fake", "--no-ray",
                 "--api-key-env", FAKE_KEY_ENV, "--cache", str(tmp_path / "c"),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "refusal rate" in printed and "skipped: 28 respondent outside the POLPARTY" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["refusal_rate"]) == {"overall", "POLPARTY=Democrat",
                                            "POLPARTY=Independent", "POLPARTY=Other",
                                            "POLPARTY=Republican"}
    table = pq.read_table(out / "opinions.parquet")
    assert all(len(d) == 4 for d in table.column("model_distribution").to_pylist()
               if d is not None and len(d) != 2)  # SAFECRIME: 4 options, WORRYG: 2
    assert read_manifest(table.schema.metadata)["benchmark"]["skipped"] == summary["skipped"]


def test_annotators_groups_dices_by_rater_columns(tmp_path: Path, capsys: Any) -> None:
    layouts.dices(tmp_path)
    out = tmp_path / "a"
    assert main(["annotators", "--dataset", "dices", "--path", str(tmp_path / "990"),
                 "--group-by", "rater_locale", "--alpha", "0", "--out", str(out)]) == 0
    assert "rater_locale=India" in capsys.readouterr().out
    assert main(["annotators", "--dataset", "labels", "--path",
                 str(tmp_path / "350" / "diverse_safety_adversarial_dialog_350.csv"),
                 "--item", "item_id", "--annotator", "rater_id", "--label", "Q_overall",
                 "--demographic-columns", "rater_gender,rater_age", "--group-by",
                 "rater_gender", "--out", str(tmp_path / "b")]) == 0
    assert "rater_gender=Woman" in capsys.readouterr().out


def test_annotators_counts_what_community_alignment_skips(tmp_path: Path, capsys: Any) -> None:
    layouts.community_alignment(tmp_path)
    out = tmp_path / "a"
    assert main(["annotators", "--dataset", "community-alignment", "--path", str(tmp_path),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 of the scenarios are rated by two or more annotators" in printed
    skipped = next(line for line in printed.splitlines() if line.startswith("skipped: "))
    assert sorted(skipped[9:].split(", ")) == ["1 identical candidates collapsed",
                                               "1 turn without a preference"]
    assert "note: 1 repeat votes (same annotator, same scenario) averaged" in printed
    manifest = read_manifest(pq.read_schema(out / "groups.parquet").metadata)
    assert manifest["benchmark"]["skipped"] == json.loads(
        (out / "summary.json").read_text())["skipped"]


def test_annotators_on_persona_says_why_in_one_line(tmp_path: Path, capsys: Any) -> None:
    layouts.persona(tmp_path)
    assert main(["annotators", "--dataset", "persona", "--path", str(tmp_path),
                 "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "PERSONA cannot form a jury" in err[0]
    assert not (tmp_path / "a" / "summary.json").exists()


def test_annotators_prism_models(tmp_path: Path, capsys: Any) -> None:
    layouts.prism(tmp_path)
    choices = tmp_path / "picks.json"
    choices.write_text(json.dumps({"prism:turn-0-models": "gpt-4"}))
    assert main(["annotators", "--dataset", "prism", "--path", str(tmp_path), "--group-by",
                 "gender", "--choices", str(choices), "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "3 annotators, 1 scenarios, 12 ratings" in printed
    assert "welfare over the jurors who rated it" in printed


def test_overton_from_overtonbench_ratings(tmp_path: Path, capsys: Any) -> None:
    layouts.overtonbench(tmp_path)
    out = tmp_path / "o"
    assert main(["overton", "--overtonbench", str(tmp_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "OvertonScore" in printed and "skipped: 1 row without a rating or cluster" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["systems"]["gpt-4o"] == {"questions": 1, "overton_score": 0.5}
    assert pq.read_table(out / "overton.parquet").num_rows == 2


def test_overtonbench_columns_can_be_named(tmp_path: Path, capsys: Any) -> None:
    p = layouts.write_csv(tmp_path / "ob.csv", ["pid", "q", "llm", "score", "cluster_kmeans"],
                          [["p1", "q1", "m", "5", "0"], ["p2", "q1", "m", "1", "1"]])
    out = tmp_path / "o"
    assert main(["overton", "--overtonbench", str(p), "--out", str(out)]) == 2
    assert "no question column" in capsys.readouterr().err  # pid is one of the names looked for
    assert main(["overton", "--overtonbench", str(p), "--overtonbench-columns",
                 "participant=pid,question=q,model=llm,rating=score", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["systems"]["m"]["overton_score"] == 0.5
