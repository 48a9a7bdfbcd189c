"""``pluralign spica``: the verbs end to end on small real files."""

from __future__ import annotations

import importlib.util
import json

import pyarrow.parquet as pq
import pytest

from pluralign.engine.spica.io import read_bank
from pluralign.jobs.cli import main


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("spica")
    bank = d / "bank.parquet"
    assert main(["spica", "synth", "--train", "120", "--dev", "60", "--test", "60",
                 "--seed", "3", "--out", str(bank)]) == 0
    return d, bank


def test_synth_fit_evaluate(small, capsys):
    d, bank = small
    assert read_bank(bank).splits == ("dev", "test", "train")
    weights = d / "w.json"
    assert main(["spica", "fit", "--bank", str(bank), "--out", str(weights)]) == 0
    table = capsys.readouterr().out
    for g in ("g1", "g2", "g3", "g4", "ALL"):
        assert f"\n{g} " in table
    saved = json.loads(weights.read_text())
    assert set(saved["weights"]) == {"g1", "g2", "g3", "g4", "ALL"}
    out = d / "eval.json"
    assert main(["spica", "evaluate", "--bank", str(bank), "--weights", str(weights),
                 "--bootstrap", "200", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "similarity" in printed and "spica" in printed
    res = json.loads(out.read_text())
    assert [g["group"] for g in res["groups"]] == ["g1", "g2", "g3", "g4", "ALL"]
    for g in res["groups"]:
        assert g["baseline"]["low"] <= g["baseline"]["mean"] <= g["baseline"]["high"]
        assert g["weights"] == saved["weights"][g["group"]]


def test_retrieve_and_prompt(small, capsys):
    d, bank = small
    weights = d / "w2.json"
    assert main(["spica", "fit", "--bank", str(bank), "--groups", "g1", "--out",
                 str(weights)]) == 0
    capsys.readouterr()
    assert main(["spica", "retrieve", "--bank", str(bank), "--weights", str(weights),
                 "--group", "g1", "--split", "test", "--limit", "2", "--k", "3"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("syn")]
    assert len(lines) == 6
    assert main(["spica", "prompt", "--bank", str(bank), "--group", "g1", "--query",
                 "what about this?", "--setup", "all", "--k", "2"]) == 0
    out = capsys.readouterr().out
    for setup in ("control", "P-I", "C-I", "P-R", "C-R"):
        assert f"setup {setup} =====" in out
    assert out.count("# Example 1") == 4


def test_malformed_authors_bank_is_one_clear_line(tmp_path, capsys):
    ann = tmp_path / "ann.json"
    scen = tmp_path / "scen.json"
    scen.write_text(json.dumps({"id": "s1", "body": "hi", "responses": {"refusal": ["no"]}}))
    ann.write_text(json.dumps({"s1": {"dem": [{"refusal": {"response-rating": 7}}]}}))
    rc = main(["spica", "fit", "--spica-annotations", f"train={ann}", "--spica-scenarios",
               str(scen), "--out", str(tmp_path / "w.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    for part in ("scenario 's1'", "group 'dem'", "rater 'dem#0'", "'response-rating'"):
        assert part in err


def test_missing_bank_and_unknown_group(small, capsys):
    _, bank = small
    assert main(["spica", "fit", "--out", "x.json"]) == 2
    assert "no bank given" in capsys.readouterr().err
    assert main(["spica", "retrieve", "--bank", str(bank), "--group", "zz", "--query", "x"]) == 2
    assert "unknown group 'zz'" in capsys.readouterr().err


_HAS_FAKE_SERVER = all(importlib.util.find_spec(m) is not None
                       for m in ("pluralign.actors.testing.fake_server", "pluralign.actors.backends.api_client", "aiohttp"))


@pytest.mark.skipif(not _HAS_FAKE_SERVER, reason="fake server or API client not available")
def test_generate_classes_through_fake_server(tmp_path, capsys):
    from pluralign.actors.testing.fake_server import FakeOpenAIServer

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Should I vote?\nIs fasting healthy?\n")
    args = ["spica", "generate", "classes", "--prompts", str(prompts), "--model", "fake-model",
            "--api-key-env", "", "--cache", str(tmp_path / "cache"),
            "--out", str(tmp_path / "grown.parquet")]
    with FakeOpenAIServer(require_auth=False) as srv:
        assert main([*args, "--base-url", srv.url]) == 0
        assert "sent 30 requests" in capsys.readouterr().out
        assert srv.stats()["total"] == 30
        grown = read_bank(tmp_path / "grown.parquet")
        assert all(len(t) == 3 for sc in grown.scenarios for t in sc.responses.values())
        assert main([*args, "--base-url", srv.url]) == 0
        assert "sent 0 requests, 30 answers from cache" in capsys.readouterr().out
        assert srv.stats()["total"] == 30


@pytest.mark.skipif(not _HAS_FAKE_SERVER, reason="fake server or API client not available")
def test_generate_aligned_writes_one_row_per_item(small, tmp_path, capsys):
    from pluralign.actors.testing.fake_server import FakeOpenAIServer

    _, bank = small
    out = tmp_path / "aligned.parquet"
    with FakeOpenAIServer(require_auth=False) as srv:
        assert main(["spica", "generate", "aligned", "--bank", str(bank), "--split", "test",
                     "--limit", "2", "--groups", "g1,g2", "--setups", "control,P-I",
                     "--model", "fake-model", "--api-key-env", "", "--base-url", srv.url,
                     "--out", str(out)]) == 0
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 2 * 2 * 2
    assert all(r["text"] for r in rows)
    assert "sent 6 requests" in capsys.readouterr().out  # controls shared by both groups


def test_jobs_without_the_command_line(small, tmp_path):
    """The typed jobs: fitted weights feed retrieval; the bank and queries are configs."""
    from pluralign.jobs.spica import (
        SpicaBankSource,
        SpicaFitConfig,
        SpicaQueries,
        SpicaRetrieveConfig,
        run_spica_fit,
        run_spica_retrieve,
    )

    _, bank = small
    source = SpicaBankSource(bank=str(bank))
    fit = run_spica_fit(SpicaFitConfig(source=source, groups="g1,ALL",
                                       out=str(tmp_path / "w.json")))
    assert list(fit.weights) == ["g1", "ALL"] and fit.path.is_file()
    got = run_spica_retrieve(SpicaRetrieveConfig(
        source=source, queries=SpicaQueries(query=("a question", "another")),
        weights=str(fit.path), group="g1", k=2))
    assert got.weights == fit.weights["g1"] and [q for q, _ in got.queries] == ["q0", "q1"]
    assert got.spica is not None and all(len(ids) == 2 for ids in got.baseline + got.spica)
