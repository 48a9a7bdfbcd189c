"""The command line end to end: sweep through the cache, align from the cache alone, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pluralign.jobs.cli import main
from tests.fake_openai import make_fake_server
from tests.test_api import fresh_python

__all__ = ["make_fake_server"]

SYN = "synthetic:S=30,R=2-3,A=3,L=5,seed=4"


def _sweep(tmp_path: Path, *extra: str, out: str = "out") -> int:
    return main(["sweep", "--benchmark", SYN, "--cache", str(tmp_path / "cache"),
                 "--out", str(tmp_path / out), *extra])


def test_sweep_writes_summary_and_per_target(tmp_path: Path, capsys) -> None:
    assert _sweep(tmp_path, "--scorer", "oracle", "--targets", "all", "high", "low") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    sets = {s["name"]: s for s in summary["sets"]}
    assert sets["all"]["n_targets"] == 125 and sets["all"]["n_defined"] == 124
    assert sets["all"]["mean"] == 100.0  # oracle scores are the labels
    table = pq.read_table(tmp_path / "out" / "per_target.parquet").to_pandas()
    assert {"target", "accuracy", "counted", "correct"} <= set(table.columns)
    empty = table[(table["set"] == "all") & (table["target"] == "{}")]
    assert len(empty) == 1 and empty["accuracy"].isna().all() and (empty["counted"] == 0).all()
    assert "accuracy by number of target attributes" in capsys.readouterr().out
    leftovers = [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_random_scorer_near_chance_and_align_reads_cache_only(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    assert _sweep(tmp_path, "--scorer", "random", "--targets", "all") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert 20 < summary["sets"][0]["mean"] < 80
    import pluralign.engine.scorers as scorers

    def boom(*a, **k):  # align must never score
        raise AssertionError("align called a scorer")

    monkeypatch.setattr(scorers, "score_through_cache", boom)
    target = '{"a0": 1.0, "a2": 0.0}'
    rc = main(["align", "--benchmark", SYN, "--cache", str(tmp_path / "cache"),
               "--scorer", "random", "--target", target, "--out", str(tmp_path / "q.json")])
    assert rc == 0
    answer = json.loads((tmp_path / "q.json").read_text())
    per = pq.read_table(tmp_path / "out" / "per_target.parquet").to_pandas()
    row = per[per["target"] == target].iloc[0]
    assert answer["targets"][0]["correct"] == row["correct"]
    assert len(answer["chosen"]["scenario"]) == 30
    assert set(answer["chosen"]["chosen"]) <= {0, 1, 2}


def test_align_without_cached_scores_says_what_to_run(tmp_path: Path, capsys) -> None:
    rc = main(["align", "--benchmark", SYN, "--cache", str(tmp_path / "empty"),
               "--scorer", "oracle", "--target", "a0=1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "pluralign sweep" in err and "Traceback" not in err


def test_bad_target_file_is_one_clear_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps({"a0": 1.5}))
    rc = _sweep(tmp_path, "--scorer", "oracle", "--targets", str(bad))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "t.json" in err[0] and "a0" in err[0] and "[0, 1]" in err[0]
    assert not (tmp_path / "out" / "summary.json").exists()


def test_debug_shows_traceback(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="unknown attribute"):
        main(["--debug", "sweep", "--benchmark", SYN, "--scorer", "oracle",
              "--cache", str(tmp_path / "c"), "--targets", "nope=1", "--out", str(tmp_path)])


def test_console_script_help() -> None:
    out = subprocess.run([sys.executable, "-m", "pluralign", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "sweep" in out and "align" in out


def test_sweep_second_run_hits_cache(tmp_path: Path, monkeypatch) -> None:
    assert _sweep(tmp_path, "--scorer", "random", "--targets", "high") == 0
    import pluralign.engine.scorers as scorers

    calls = []
    real = scorers.get_scorer

    def spy(*a, **k):
        s = real(*a, **k)
        orig = s.predict

        def predict(bench):
            calls.append(1)
            return orig(bench)

        s.predict = predict
        return s

    monkeypatch.setattr(scorers, "get_scorer", spy)
    assert _sweep(tmp_path, "--scorer", "random", "--targets", "high", out="out2") == 0
    assert calls == []
    a = json.loads((tmp_path / "out" / "summary.json").read_text())["sets"][0]["mean"]
    b = json.loads((tmp_path / "out2" / "summary.json").read_text())["sets"][0]["mean"]
    assert np.isclose(a, b)


def test_limit_run_shares_cache_with_full_run(tmp_path: Path, monkeypatch) -> None:
    """Scores cached by a --limit run are reused by the full run (same items, same keys)."""
    from pluralign.engine.data.sources import load_benchmark
    from pluralign.engine.scorers import get_scorer
    from pluralign.engine.store.cache import ScoreCache

    assert _sweep(tmp_path, "--scorer", "random", "--targets", "high", "--limit", "10") == 0
    bench = load_benchmark(SYN, "eval")
    ident = get_scorer("random", seed=0).identity(bench, None)
    preds = ScoreCache(tmp_path / "cache").predictions(bench, ident)
    done = ~np.isnan(preds).any(axis=1)
    assert done.sum() == bench.offsets[10]  # exactly the first 10 scenarios' responses


def test_version(capsys) -> None:
    import pluralign

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"pluralign {pluralign.__version__}"


def test_help_imports_no_command_module() -> None:
    """Top-level help reads the command list from source: no command's imports run."""
    code = ("import sys\nfrom pluralign.jobs.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\n"
            "print([m for m in sys.modules if m.startswith('pluralign.jobs.cmd_') "
            "or m in ('numpy', 'pyarrow', 'ray', 'aiohttp')])")
    out = fresh_python(code)
    assert "sweep" in "\n".join(out) and "report" in "\n".join(out)  # every command listed
    assert out[-1] == "[]"


def test_misspelt_flag_is_reported_by_the_subcommand_with_a_suggestion(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--scorr", "ridge", "--out", "x"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert "pluralign sweep: error: unrecognized arguments: --scorr" in err
    assert "did you mean --scorer?" in err
    with pytest.raises(SystemExit):
        main(["spica", "evaluate", "--bank", "synthetic:0", "--bootstrapp", "3"])
    err = capsys.readouterr().err
    assert "pluralign spica evaluate: error" in err and "did you mean --bootstrap?" in err


def test_misspelt_command_suggests_one(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["swep"])
    assert "did you mean sweep?" in capsys.readouterr().err


def test_help_is_plain_text_and_descriptions_differ(capsys) -> None:
    from pluralign.jobs.cli import commands

    texts = {}
    for name in commands():
        with pytest.raises(SystemExit):
            main([name, "--help"])
        texts[name] = capsys.readouterr().out
        assert "``" not in texts[name], name
    assert texts["jury"].split("\n\n")[1] != texts["distribution"].split("\n\n")[1]


def test_result_files_respect_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        assert _sweep(tmp_path, "--scorer", "oracle", "--targets", "high") == 0
    finally:
        os.umask(old)
    for name in ("summary.json", "per_target.parquet"):
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o644, name


def test_misspelt_scorer_or_set_lists_every_name(tmp_path: Path, capsys) -> None:
    assert _sweep(tmp_path, "--scorer", "rigde") == 2
    err = capsys.readouterr().err
    assert "did you mean 'ridge'?" in err
    for name in ("constant", "oracle", "predictions:FILE", "random", "ridge",
                 "comparative-regression", "regression", "prompt-aligned", "unaligned"):
        assert name in err
    assert _sweep(tmp_path, "--scorer", "oracle", "--targets", "al") == 2
    err = capsys.readouterr().err
    assert "did you mean 'all'?" in err and "sets: all, sampled, high, low" in err


def test_align_sends_large_choices_to_parquet_with_a_warning(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    import pluralign.jobs.cli.align as cmd_align

    assert _sweep(tmp_path, "--scorer", "oracle", "--targets", "high") == 0
    monkeypatch.setattr(cmd_align, "JSON_LIMIT", 10_000)
    rc = main(["align", "--benchmark", SYN, "--cache", str(tmp_path / "cache"), "--scorer",
               "oracle", "--targets", "all", "--show", "0", "--out", str(tmp_path / "a.json")])
    assert rc == 0
    assert "MB of JSON" in capsys.readouterr().err
    head = json.loads((tmp_path / "a.json").read_text())
    assert "chosen" not in head and len(head["targets"]) == 125
    chosen = pq.read_table(tmp_path / head["chosen_file"])
    assert chosen.num_rows == 125 * 30


def test_llm_progress_line_shows_retries_and_failures(
    tmp_path: Path, make_fake_server, shared_data: Path
) -> None:
    """Run as a process: the progress line goes to the real stderr, as users see it."""
    import re

    pytest.importorskip("aiohttp")
    server = make_fake_server(require_auth=False, fault_5xx=0.4, seed=3)
    proc = subprocess.run(
        [sys.executable, "-m", "pluralign", "sweep", "--benchmark", "helpsteer2", "--data",
         str(shared_data), "--scorer", "comparative-regression", "--base-url", server.url,
         "--model", "fake-model", "--api-key-env", "none", "--limit", "5", "--no-ray",
         "--targets", "high", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 2), proc.stderr  # 2: an item ran out of sends (failed)
    lines = [ln for ln in proc.stderr.splitlines() if " items (" in ln]
    counts = [int(m.group(1)) for ln in lines if (m := re.search(r"(\d+) retries", ln))]
    assert lines and len(counts) == len(lines) and counts[-1] > 0
    assert all(" failed, " in ln for ln in lines)
