"""``pluralign cache ls|show|verify|gc`` through the real command line, and a key echoed by an
endpoint inside its answers found nowhere on disk."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import pluralign.engine.store.parts as parts_mod
from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.judges.fake_answerer import label_answerer
from pluralign.engine.store.cache import ScoreCache, ScoreFailure, scorer_identity
from pluralign.engine.store.manifest import begin, end
from pluralign.jobs.cli import main
from pluralign.schemas.records import ScoreRecord
from tests.fake_openai import FAKE_KEY, fake_key, make_fake_server
from tests.jobs.test_llm_scoring import bench_pair, parse

__all__ = ["fake_key", "make_fake_server"]

SCORER = scorer_identity("judge", {"model": "m", "temperature": 0.0})


def fill(root: Path) -> Any:
    bench = synthetic_benchmark(4, (2, 2), 2, 5, seed=3)
    recs = [ScoreRecord(bench.identity, s.id, r, a, SCORER, 0, 0.5, reasoning="ok")
            for s in bench.scenarios for r in range(2) for a in bench.attributes]
    m = begin("sweep", ["pluralign", "sweep"])
    m.note_scorer({"identity": SCORER, "name": "judge", "model": "m", "temperature": 0.0})
    try:
        cache = ScoreCache(root)
        cache.append(recs[:-2])
        cache.append([ScoreFailure(bench.identity, s.id, 1, bench.attributes[0], SCORER, 0,
                                   "timeout") for s in bench.scenarios[-1:]])
        cache.append(recs[:3])  # duplicates
    finally:
        end()
    return bench, recs


def test_ls_and_show_decode_what_the_cache_holds(tmp_path: Path, capsys: Any) -> None:
    bench, recs = fill(tmp_path)
    assert main(["cache", "--cache", str(tmp_path), "ls", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"store": "scores", "benchmark": bench.identity, "scorer": SCORER, "complete": len(recs) - 2,
                     "failed": 1, "scenarios": 4, "attributes": list(bench.attributes),
                     "samples": 1}]
    assert main(["cache", "--cache", str(tmp_path), "show", "judge"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown[0]["settings"] == {"identity": SCORER, "name": "judge", "model": "m",
                                    "temperature": 0.0}
    assert main(["cache", "--cache", str(tmp_path), "ls"]) == 0
    table = capsys.readouterr().out
    with capsys.disabled():
        print("\n" + table)
    assert SCORER in table and f"{len(recs) - 2:>9} {1:>7}" in table
    assert main(["cache", "--cache", str(tmp_path), "show", "nobody"]) == 2
    assert "no scorer 'nobody'" in capsys.readouterr().err


def test_verify_names_a_planted_foreign_part_and_gc_cleans(tmp_path: Path, capsys: Any) -> None:
    fill(tmp_path)
    good = pq.read_table(ScoreCache(tmp_path).parts()[0])
    keys = good["key"].to_pylist()
    forged = good.set_column(0, good.schema.field("key"), pa.array(keys[::-1], pa.string()))
    foreign = tmp_path / "part-00000000000000000042-0000001-abcabcabcabc.parquet"
    pq.write_table(forged, foreign)
    parts_mod._INDEXES.clear()
    assert main(["cache", "--cache", str(tmp_path), "verify"]) == 3
    out = capsys.readouterr()
    with capsys.disabled():
        print("\n" + out.out)
    bad_lines = [line for line in out.out.splitlines() if line.startswith("bad part:")]
    assert len(bad_lines) == 1 and str(foreign) in bad_lines[0]
    assert "rows have a key that does not match their fields" in bad_lines[0]
    assert main(["cache", "--cache", str(tmp_path), "gc"]) == 2  # refused: nothing merged
    assert "nothing was changed" in capsys.readouterr().err

    foreign.unlink()
    stale = tmp_path / ".tmp-part-00000000000000000001-0000009-deadbeefdead.parquet.tmp"
    stale.write_bytes(b"\0" * 1_000_000)
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    parts_mod._INDEXES.clear()
    assert main(["cache", "--cache", str(tmp_path), "verify"]) == 0
    summary = capsys.readouterr().out.splitlines()[-1]
    assert summary == "scores: 3 parts, 0 bad, 18 rows, 3 superseded, 1 temp files"
    assert main(["cache", "--cache", str(tmp_path), "gc"]) == 0
    out = capsys.readouterr().out
    with capsys.disabled():
        print("\n" + out)
    assert out.splitlines()[-1] == "scores: 1 temp files removed; rows 18 -> 15; parts 3 -> 1"
    assert not stale.exists()
    # the compacted part keeps the decoded settings
    assert main(["cache", "--cache", str(tmp_path), "show"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["settings"]["model"] == "m"


def test_missing_cache_is_one_line(tmp_path: Path, capsys: Any) -> None:
    assert main(["cache", "--cache", str(tmp_path / "nope"), "ls"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err


def _echoing(answerer: Any) -> Any:
    """Wraps an answerer so every text field of every answer carries the caller's key."""
    def echo(v: Any) -> Any:
        if isinstance(v, str):
            return f"{v} (my key is {FAKE_KEY})"
        if isinstance(v, dict):
            return {k: echo(x) for k, x in v.items()}
        if isinstance(v, list):
            return [echo(x) for x in v]
        return v

    def answer(body: dict[str, Any]) -> str:
        return json.dumps(echo(json.loads(answerer(body))))
    return answer


def test_a_key_echoed_in_answers_is_stored_nowhere(
        tmp_path: Path, fake_key: str, make_fake_server: Any, monkeypatch: Any) -> None:
    from pluralign.jobs.llm_scoring import run_llm_scoring

    monkeypatch.setattr(parts_mod, "_SECRETS", set())
    bench, train = bench_pair(6)
    server = make_fake_server(answerer=_echoing(label_answerer(bench, noise=0.1)))
    cache = ScoreCache(tmp_path)
    report = run_llm_scoring(bench, train, "comparative-regression", parse(server.url), cache,
                             log=None)
    assert report.schedule.completed == 6 * len(bench.attributes)
    texts = cache.read(report.bench.identity, report.identity, text=True)
    reasonings = [r for r in texts["reasoning"].to_pylist() if r]
    assert reasonings and all("[redacted]" in r for r in reasonings)  # the echo arrived
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and all(FAKE_KEY.encode() not in p.read_bytes() for p in files)


def _stale(path: Path) -> Path:
    path.write_bytes(b"\0" * 1000)
    os.utime(path, (time.time() - 7200, time.time() - 7200))
    return path


def test_verify_gc_and_ls_cover_the_choices_and_leave_claims_alone(
        tmp_path: Path, capsys: Any) -> None:
    from pluralign.engine.store.choices import ChoiceCache, choice_key
    from pluralign.engine.store.claims import Claims

    bench, _ = fill(tmp_path)
    rows = [{"key": choice_key(bench.identity, s.id, "", SCORER, k), "benchmark": bench.identity,
             "scenario": s.id, "target": "", "scorer": SCORER, "sample": k, "choice": 1,
             "reasoning": "r", "error": None, "meta": "{}"}
            for s in bench.scenarios for k in range(2)]
    choices = ChoiceCache(tmp_path)
    choices.append(rows)
    choices.append([{**rows[0], "choice": 0}, {**rows[1], "choice": None, "error": "503"}])
    claims = Claims(tmp_path)
    assert claims.try_claim("some-item")
    claim_files = sorted(p for p in (tmp_path / ".claims").iterdir())
    assert claim_files
    stale = _stale(tmp_path / "choices" / f".tmp-part-{'0' * 20}-0000001-abcdef.parquet.tmp")

    assert main(["cache", "--cache", str(tmp_path), "ls", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["store"] for r in listed] == ["scores", "choices"]
    assert {k: listed[1][k] for k in ("benchmark", "scorer", "complete", "failed", "scenarios",
                                      "targets", "samples")} == {
        "benchmark": bench.identity, "scorer": SCORER, "complete": 8, "failed": 0,
        "scenarios": 4, "targets": 1, "samples": 2}
    assert main(["cache", "--cache", str(tmp_path), "ls"]) == 0
    assert "\nchoices\n" in capsys.readouterr().out

    assert main(["cache", "--cache", str(tmp_path), "verify"]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if not x.startswith("temp file:")]
    assert lines == ["scores: 3 parts, 0 bad, 18 rows, 3 superseded, 0 temp files",
                     "choices: 2 parts, 0 bad, 10 rows, 2 superseded, 1 temp files"]
    assert main(["cache", "--cache", str(tmp_path), "gc"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "scores: 0 temp files removed; rows 18 -> 15; parts 3 -> 1",
        f"removed temp file: {stale}",
        "choices: 1 temp files removed; rows 10 -> 8; parts 2 -> 1"]
    assert not stale.exists()
    assert sorted(p for p in (tmp_path / ".claims").iterdir()) == claim_files  # untouched
    parts_mod._INDEXES.clear()
    assert ChoiceCache(tmp_path).choices(bench, SCORER, [""], 2)[:, 0].tolist() == [0, 1, 1, 1]


def test_a_bad_choice_part_stops_gc_of_every_store(tmp_path: Path, capsys: Any) -> None:
    from pluralign.engine.store.choices import ChoiceCache

    bench, _ = fill(tmp_path)
    ChoiceCache(tmp_path).append([{"benchmark": bench.identity, "scenario": "s000000",
                                   "target": "", "scorer": SCORER, "sample": 0, "choice": 1,
                                   "reasoning": None, "error": None, "meta": None}])
    bad = tmp_path / "choices" / f"part-{'f' * 32}.parquet"
    bad.write_bytes(b"not parquet")
    listing = sorted(str(p) for p in tmp_path.rglob("*"))
    assert main(["cache", "--cache", str(tmp_path), "verify"]) == 3
    out = capsys.readouterr().out
    bad_lines = [line for line in out.splitlines() if line.startswith("bad part:")]
    assert len(bad_lines) == 1
    assert bad_lines[0].startswith(f"bad part: {bad}: not a readable choice-cache part (")
    assert "choices: 2 parts, 1 bad, 1 rows, 0 superseded, 0 temp files" in out
    assert main(["cache", "--cache", str(tmp_path), "gc", "--min-age", "0"]) == 2
    assert "nothing was changed" in capsys.readouterr().err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == listing  # the scores untouched too


def test_a_spica_generation_folder_verifies_lists_and_gcs(tmp_path: Path, capsys: Any) -> None:
    from pluralign.engine.run.backend import GenerationRequest, Message
    from pluralign.engine.store.generations import CachedGeneration, GenerationCache, work_key

    def gen(seed: int, error: str | None = None) -> CachedGeneration:
        req = GenerationRequest("", (Message("user", "hi"),), seed=seed)
        return CachedGeneration(work_key("m", req), "aligned", "m", req.fingerprint(),
                                () if error else (f"text {seed}",), error)

    folder = tmp_path / "gens"
    cache = GenerationCache(folder)
    cache.append([gen(0), gen(1, "503"), gen(2)])
    cache.append([gen(1), gen(2, "timeout")])
    before = cache.load()
    _stale(folder / f".tmp-part-{'0' * 20}-0000001-abcdefabcdef.parquet.tmp")
    assert main(["cache", "--cache", str(folder), "ls", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"store": "generations", "task": "aligned", "model": "m", "complete": 3, "failed": 0}]
    assert main(["cache", "--cache", str(folder), "verify"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "generations: 2 parts, 0 bad, 5 rows, 2 superseded, 1 temp files")
    assert main(["cache", "--cache", str(folder), "gc"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "generations: 1 temp files removed; rows 5 -> 3; parts 2 -> 1")
    parts_mod._INDEXES.clear()
    assert GenerationCache(folder).load() == before
    assert main(["cache", "--cache", str(folder), "show"]) == 2  # no scorers in a spica folder


def test_the_cache_folder_may_follow_the_action(tmp_path: Path, capsys: Any) -> None:
    fill(tmp_path / "here")
    assert main(["cache", "--cache", str(tmp_path / "here"), "ls", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert main(["cache", "ls", "--json", "--cache", str(tmp_path / "here")]) == 0
    assert json.loads(capsys.readouterr().out) == before != []
    # given in both places, the one after the action wins
    assert main(["cache", "--cache", str(tmp_path / "empty"), "verify", "--cache",
                 str(tmp_path / "here")]) == 0
    assert "scores: " in capsys.readouterr().out


def test_the_cache_jobs_return_what_the_command_prints(tmp_path: Path, capsys: Any) -> None:
    from pluralign.jobs.cache_admin import gc_cache, list_cache, show_scorers, verify_cache

    bench, recs = fill(tmp_path)
    listing = list_cache(tmp_path)
    assert main(["cache", "--cache", str(tmp_path), "ls", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == listing.rows()
    assert listing.choices == listing.generations == []
    assert listing.scores[0]["complete"] == len(recs) - 2
    assert show_scorers(tmp_path, "judge")[0]["settings"]["model"] == "m"
    assert show_scorers(tmp_path, benchmark=bench.identity)[0]["scorer"] == SCORER
    [checked] = verify_cache(tmp_path)
    assert (checked.store.name, checked.check.superseded, checked.check.bad) == ("scores", 3, [])
    [done] = gc_cache(tmp_path, min_age=0)
    assert (done.report.rows_before, done.report.rows_after) == (18, 15)


def test_cache_ls_in_a_fresh_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    fill(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "pluralign", "cache", "--cache", str(tmp_path),
                           "ls", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["scorer"] == SCORER
