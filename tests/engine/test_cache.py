"""The score cache: content keys, append-only atomic parts, schema versions, failures."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pluralign.engine.store.cache as cache_mod
import pluralign.engine.store.parts as parts_mod
from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.errors import CacheSchemaError, InputError
from pluralign.engine.store import redaction
from pluralign.engine.store.cache import (
    CacheCorruptError,
    ScoreCache,
    ScoreFailure,
    canonical_json,
    score_key,
    scorer_identity,
)
from pluralign.schemas.arrow import SCHEMA_VERSION, SCORE_SCHEMA
from pluralign.schemas.records import ScoreRecord

REPO = Path(__file__).resolve().parents[2]
SETTINGS = {"model": "m-7b", "revision": "abc", "template": "t1", "schema": "s1",
            "temperature": 0.7, "max_tokens": 256, "train": "hs2/train@1"}
SCORER = scorer_identity("judge", SETTINGS)


@pytest.fixture
def bench():
    return synthetic_benchmark(12, (2, 3), 3, 5, seed=1)


def records(bench, scorer=SCORER, samples=(0,), value=None):
    rng = np.random.default_rng(0)
    out = []
    for s, sc in enumerate(bench.scenarios):
        for r in range(len(sc.responses)):
            for a in bench.attributes:
                for k in samples:
                    score = float(rng.random()) if value is None else value
                    out.append(ScoreRecord(bench.identity, sc.id, r, a, scorer, k, score,
                                           reasoning=f"why {s}.{r}.{a}.{k}"))
    return out


def expected(bench, recs, samples=None):
    out = np.full((bench.n_responses, len(bench.attributes)), np.nan)
    acc: dict[tuple[int, int], list[float]] = {}
    for rec in recs:
        if samples is not None and rec.sample >= samples:
            continue
        row = int(bench.offsets[bench.index_of(rec.scenario)]) + rec.response
        acc.setdefault((row, bench.attributes.index(rec.attribute)), []).append(rec.score)
    for (row, a), vals in acc.items():
        out[row, a] = np.mean(vals)
    return out


def test_round_trip(tmp_path, bench):
    recs = records(bench, samples=(0, 1, 2))
    cache = ScoreCache(tmp_path)
    part = cache.append(recs)
    assert part is not None and part.exists() and part.name.startswith("part-")
    np.testing.assert_allclose(cache.predictions(bench, SCORER), expected(bench, recs))
    np.testing.assert_allclose(cache.predictions(bench, SCORER, 2), expected(bench, recs, 2))
    table = ScoreCache(tmp_path).read(bench.identity, SCORER, text=True)
    assert table.num_rows == len(recs)
    rows = {r["key"]: r for r in table.to_pylist()}
    rec = recs[5]
    key = score_key(rec.benchmark, rec.scenario, rec.response, rec.attribute, rec.scorer,
                    rec.sample)
    assert rows[key]["score"] == rec.score and rows[key]["reasoning"] == rec.reasoning
    assert cache.completed_keys(bench.identity, SCORER) == set(rows)
    assert cache.completed_keys(bench.identity, "other#0") == set()


def test_score_key_is_sha256_of_canonical_json():
    fields = dict(benchmark="b/é@1", scenario='s"1', response=2, attribute="a", scorer="x#1",
                  sample=3)
    assert score_key(**fields) == hashlib.sha256(canonical_json(fields).encode()).hexdigest()
    assert canonical_json({"b": 1, "a": (1, 2)}) == '{"a":[1,2],"b":1}'


KEY_CHANGES = [
    ("benchmark", "synthetic/other@0000"),
    ("scenario", "s999999"),
    ("response", 1),
    ("attribute", "a2"),
    ("sample", 1),
    *[("scorer", scorer_identity("judge", {**SETTINGS, name: value}))
      for name, value in [("model", "m-70b"), ("revision", "abd"), ("template", "t2"),
                          ("schema", "s2"), ("temperature", 0.0), ("max_tokens", 512),
                          ("train", "hs2/train@2")]],
    ("scorer", scorer_identity("other-judge", SETTINGS)),
]


@pytest.mark.parametrize(("field", "value"), KEY_CHANGES,
                         ids=[f"{f}={v}" for f, v in KEY_CHANGES])
def test_changing_any_key_field_misses(tmp_path, bench, field, value):
    base = ScoreRecord(bench.identity, bench.scenarios[0].id, 0, "a0", SCORER, 0, 0.25)
    cache = ScoreCache(tmp_path)
    cache.append([base])
    changed = dataclasses.replace(base, **{field: value})
    assert key_of(changed) != key_of(base)
    assert key_of(base) in cache.completed_keys()
    assert key_of(changed) not in cache.completed_keys()
    assert cache.completed_keys(changed.benchmark, changed.scorer) in (set(), {key_of(base)})
    if field in ("response", "attribute", "sample", "scenario"):
        missing = cache.missing(bench, SCORER, 2)
        probe = (changed.scenario, changed.response, changed.attribute, changed.sample)
        assert (base.scenario, 0, "a0", 0) not in missing
        assert probe in missing or changed.scenario not in {s.id for s in bench.scenarios}


def key_of(rec):
    return score_key(rec.benchmark, rec.scenario, rec.response, rec.attribute, rec.scorer,
                     rec.sample)


def test_identity_ignores_setting_order_but_not_values():
    a = scorer_identity("ridge", {"alpha": [1, 10], "seed": 0})
    assert a == scorer_identity("ridge", {"seed": 0, "alpha": (1, 10)})
    assert a != scorer_identity("ridge", {"seed": 0, "alpha": (10, 1)})
    assert a.startswith("ridge#") and len(a.split("#")[1]) == 12
    with pytest.raises(ValueError, match="not finite"):
        scorer_identity("x", {"t": float("nan")})


def test_changed_benchmark_content_misses(tmp_path, bench):
    cache = ScoreCache(tmp_path)
    cache.append(records(bench))
    other = synthetic_benchmark(12, (2, 3), 3, 5, seed=2)  # same shape, other labels
    assert other.identity != bench.identity
    assert np.isnan(cache.predictions(other, SCORER)).all()


def _fingerprint(paths):
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size,
                     hashlib.sha256(p.read_bytes()).hexdigest()) for p in paths}


def test_append_never_rewrites_existing_parts(tmp_path, bench):
    cache = ScoreCache(tmp_path)
    cache.append(records(bench)[:10])
    cache.append(records(bench)[10:20])
    before = _fingerprint(cache.parts())
    cache.append(records(bench, value=0.9))  # overlaps every earlier key
    after = _fingerprint(cache.parts())
    assert len(after) == 3
    assert {k: after[k] for k in before} == before
    assert np.allclose(cache.predictions(bench, SCORER), 0.9)  # the newest part wins


def test_crash_mid_write_leaves_no_visible_part(tmp_path, bench, monkeypatch):
    cache = ScoreCache(tmp_path)
    cache.append(records(bench)[:5])
    good = cache.predictions(bench, SCORER)

    def crash(table, where, **kw):
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod.pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        cache.append(records(bench))
    monkeypatch.undo()
    assert len(list(tmp_path.iterdir())) == 1  # neither a part nor a temporary file
    fresh = ScoreCache(tmp_path)
    np.testing.assert_array_equal(fresh.predictions(bench, SCORER), good)


def test_bad_rows_are_refused_before_writing(tmp_path, bench):
    cache = ScoreCache(tmp_path)
    row = {"benchmark": bench.identity, "scenario": "s000000", "response": 0,
           "attribute": "a0", "scorer": SCORER, "sample": 0, "score": float("nan"),
           "error": None}
    with pytest.raises(InputError, match=r"record 1.*'score'.*finite"):
        cache.append([{**row, "score": 0.5}, row])
    with pytest.raises(InputError, match="'key'"):
        cache.append([{**row, "score": 0.5, "key": "0" * 64}])
    with pytest.raises(InputError, match="'response'"):
        cache.append([{**row, "score": 0.5, "response": -1}])
    assert cache.parts() == []


def _write_part(path, schema):
    table = pa.table({f.name: pa.array([], f.type) for f in SCORE_SCHEMA}, schema=schema)
    pq.write_table(table, path)


@pytest.mark.parametrize("version", ["0", None])
def test_other_schema_version_is_refused(tmp_path, bench, version):
    ScoreCache(tmp_path).append(records(bench)[:3])
    meta = {} if version is None else {b"pluralign.schema_version": version.encode(),
                                       b"pluralign.kind": b"scores"}
    bad = tmp_path / "part-00000000000000000001-0000001-aaaaaaaaaaaa.parquet"
    _write_part(bad, SCORE_SCHEMA.with_metadata(meta))
    parts_mod._INDEXES.clear()  # a fresh process
    with pytest.raises(CacheSchemaError) as err:
        ScoreCache(tmp_path)
    text = str(err.value)
    assert bad.name in text and f"schema version {SCHEMA_VERSION}" in text
    assert ("version 0" in text) if version else ("(none)" in text)


def test_corrupt_part_names_the_file(tmp_path, bench):
    ScoreCache(tmp_path).append(records(bench)[:3])
    bad = tmp_path / "part-00000000000000000002-0000001-bbbbbbbbbbbb.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(CacheCorruptError, match=bad.name):
        ScoreCache(tmp_path)


def test_failures_are_recorded_and_retried(tmp_path, bench):
    cache = ScoreCache(tmp_path)
    sc = bench.scenarios[0].id
    cache.append(records(bench)[1:], failures=[
        ScoreFailure(bench.identity, sc, 0, "a0", SCORER, 0, "answer did not parse"),
    ])
    cache.append([{"benchmark": bench.identity, "scenario": sc, "response": 0,
                   "attribute": "a0", "scorer": SCORER, "sample": 1, "score": None,
                   "error": "timeout", "meta": {"attempts": "3"}}])
    failed = cache.failed(bench.identity, SCORER).to_pylist()
    assert sorted((f["sample"], f["error"]) for f in failed) == [
        (0, "answer did not parse"), (1, "timeout")]
    key0 = score_key(bench.identity, sc, 0, "a0", SCORER, 0)
    assert key0 not in cache.completed_keys()
    assert np.isnan(cache.predictions(bench, SCORER)[0, 0])
    assert (sc, 0, "a0", 0) in cache.missing(bench, SCORER, 1)
    cache.append([ScoreRecord(bench.identity, sc, 0, "a0", SCORER, 0, 0.4)])
    assert key0 in cache.completed_keys()
    assert [f["sample"] for f in cache.failed().to_pylist()] == [1]
    assert cache.predictions(bench, SCORER, [0])[0, 0] == 0.4


def test_success_is_not_undone_by_a_later_failure(tmp_path, bench):
    cache = ScoreCache(tmp_path)
    rec = records(bench)[0]
    cache.append([rec])
    cache.append([], failures=[ScoreFailure(rec.benchmark, rec.scenario, rec.response,
                                            rec.attribute, rec.scorer, rec.sample, "x")])
    assert key_of(rec) in cache.completed_keys()
    assert cache.failed().num_rows == 0


def test_samples_select_and_average(tmp_path, bench):
    recs = records(bench, samples=(0, 1, 2))
    cache = ScoreCache(tmp_path)
    cache.append([r for r in recs if r.sample != 2])
    only1 = [r for r in recs if r.sample == 1]
    np.testing.assert_allclose(cache.predictions(bench, SCORER, [1]), expected(bench, only1))
    assert not np.isnan(cache.predictions(bench, SCORER, 3)).any()  # mean of what exists
    missing = cache.missing(bench, SCORER, 3)
    assert len(missing) == bench.n_responses * 3 and {m[3] for m in missing} == {2}
    with pytest.raises(InputError, match="samples"):
        cache.predictions(bench, SCORER, 0)


def test_compact_keeps_answers_and_merges_parts(tmp_path, bench):
    cache = ScoreCache(tmp_path)
    cache.append(records(bench, value=0.1))
    cache.append(records(bench, value=0.3)[:4])
    cache.append([], failures=[ScoreFailure(bench.identity, "s000000", 0, "a0", "z#1", 0, "e")])
    before = cache.predictions(bench, SCORER)
    text_before = sorted(r["reasoning"] for r in cache.read(bench.identity, SCORER, text=True)
                         .to_pylist())
    merged = cache.compact()
    assert merged is not None and cache.parts() == [merged]
    parts_mod._INDEXES.clear()
    fresh = ScoreCache(tmp_path)
    np.testing.assert_array_equal(fresh.predictions(bench, SCORER), before)
    assert sorted(r["reasoning"] for r in fresh.read(bench.identity, SCORER, text=True)
                  .to_pylist()) == text_before
    assert fresh.failed().num_rows == 1
    fresh.append(records(bench, value=0.7)[:1])  # a later part still wins over the merge
    assert fresh.predictions(bench, SCORER)[0, 0] == 0.7


APPENDER = textwrap.dedent("""
    import sys
    from pluralign.engine.store.cache import ScoreCache
    from pluralign.engine.data.synthetic import synthetic_benchmark
    from pluralign.schemas.records import ScoreRecord
    bench = synthetic_benchmark(12, (2, 3), 3, 5, seed=1)
    worker = int(sys.argv[2])
    cache = ScoreCache(sys.argv[1])
    for k in range(3):
        cache.append([ScoreRecord(bench.identity, sc.id, r, "a0", "w#1", worker * 10 + k, 0.5)
                      for sc in bench.scenarios for r in range(len(sc.responses))])
""")


def test_concurrent_appenders_do_not_clobber(tmp_path, bench):
    reader = ScoreCache(tmp_path)
    assert reader.completed_keys() == set()
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(tmp_path), str(w)], cwd=REPO)
             for w in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    assert len(reader.parts()) == 12
    assert len(reader.completed_keys(bench.identity, "w#1")) == 12 * bench.n_responses
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- trust nothing on disk


def _planted(tmp_path, table, n="00000000000000000009"):
    path = tmp_path / f"part-{n}-0000001-cccccccccccc.parquet"
    pq.write_table(table, path)
    parts_mod._INDEXES.clear()  # a fresh process reads it
    return path


def test_foreign_part_with_keys_not_matching_its_fields_is_refused(tmp_path, bench):
    ScoreCache(tmp_path).append(records(bench)[:6])
    good = pq.read_table(ScoreCache(tmp_path).parts()[0])
    # right metadata and schema, but every key belongs to another row (shifted by one)
    keys = good["key"].to_pylist()
    forged = good.set_column(0, SCORE_SCHEMA.field("key"),
                             pa.array(keys[1:] + keys[:1], pa.string()))
    bad = _planted(tmp_path, forged)
    with pytest.raises(CacheCorruptError) as err:
        ScoreCache(tmp_path).predictions(bench, SCORER)
    line = str(err.value)
    print(f"\nforeign part (keys): {line}")
    assert "\n" not in line and str(bad) in line
    assert "6 of 6 rows have a key that does not match their fields" in line
    check = cache_mod.verify(tmp_path)
    assert [p.path for p in check.bad] == [bad] and len(check.parts) == 2


def test_part_with_other_column_types_is_refused_in_one_line(tmp_path, bench):
    ScoreCache(tmp_path).append(records(bench)[:3])
    good = pq.read_table(ScoreCache(tmp_path).parts()[0])
    schema = pa.schema([pa.field("score", pa.string()) if f.name == "score" else f
                        for f in SCORE_SCHEMA], metadata=SCORE_SCHEMA.metadata)
    bad = _planted(tmp_path, good.cast(schema))
    with pytest.raises(CacheCorruptError) as err:
        ScoreCache(tmp_path)
    line = str(err.value)
    print(f"\nforeign part (types): {line}")
    assert "\n" not in line and str(bad) in line
    assert "column 'score' is string, expected double" in line


def test_part_with_missing_column_is_refused(tmp_path, bench):
    ScoreCache(tmp_path).append(records(bench)[:3])
    good = pq.read_table(ScoreCache(tmp_path).parts()[0]).drop_columns(["meta"])
    bad = _planted(tmp_path, good.replace_schema_metadata(SCORE_SCHEMA.metadata))
    with pytest.raises(CacheCorruptError, match=r"columns missing \['meta'\]") as err:
        ScoreCache(tmp_path)
    assert str(bad) in str(err.value)


def test_gc_removes_stale_temp_files_and_duplicate_rows(tmp_path, bench):
    import os
    import time

    recs = records(bench)
    cache = ScoreCache(tmp_path)
    cache.append(recs)
    cache.append(recs[:10])  # the same keys again: 10 duplicate rows
    cache.append([dataclasses.replace(r, score=0.5) for r in recs[:5]])  # 5 newer answers
    before = cache.predictions(bench, SCORER)
    stale = tmp_path / ".tmp-part-00000000000000000001-0000001-dddddddddddd.parquet.tmp"
    stale.write_bytes(b"\0" * 5_000_000)  # a killed write's leftover
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".tmp-part-00000000000000000002-0000002-eeeeeeeeeeee.parquet.tmp"
    fresh.write_bytes(b"in progress")
    check = cache_mod.verify(tmp_path)
    assert check.rows == len(recs) + 15 and check.superseded == 15
    assert check.temp_files == sorted([stale, fresh])
    report = cache_mod.gc(tmp_path, min_age=600)
    print(f"\ngc: temp files removed {len(report.temp_files_removed)} (5 MB), rows "
          f"{report.rows_before} -> {report.rows_after}, parts {report.parts_before} -> "
          f"{report.parts_after}")
    assert report.temp_files_removed == [stale] and fresh.exists() and not stale.exists()
    assert (report.rows_before, report.rows_after) == (len(recs) + 15, len(recs))
    assert (report.parts_before, report.parts_after) == (3, 1)
    parts_mod._INDEXES.clear()
    np.testing.assert_array_equal(ScoreCache(tmp_path).predictions(bench, SCORER), before)


def test_gc_refuses_a_cache_with_a_bad_part_and_changes_nothing(tmp_path, bench):
    cache = ScoreCache(tmp_path)
    cache.append(records(bench)[:3])
    cache.append(records(bench)[:3])
    bad = tmp_path / "part-00000000000000000003-0000001-ffffffffffff.parquet"
    bad.write_bytes(b"not parquet")
    listing = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(CacheCorruptError, match="nothing was changed") as err:
        cache_mod.gc(tmp_path, min_age=0)
    assert str(bad) in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == listing


# ---------------------------------------------------------------- secrets never stored


def test_registered_secret_is_redacted_from_every_stored_text(tmp_path, bench, monkeypatch):
    secret = "sk-planted-0123456789abcdef"
    monkeypatch.setattr(redaction, "_SECRETS", set())
    cache_mod.register_secret(secret)
    rec = records(bench)[0]
    leaky = dataclasses.replace(rec, reasoning=f"my key is {secret}!",
                                meta={"raw": f"{{\"answer\": \"{secret}\"}}",
                                      "prompt": f"use {secret}"})
    fail = ScoreFailure(bench.identity, rec.scenario, 1, rec.attribute, SCORER, 0,
                        error=f"HTTP 500: bad key {secret}")
    ScoreCache(tmp_path).append([leaky], [fail])
    for part in tmp_path.rglob("*"):
        if part.is_file():
            assert secret.encode() not in part.read_bytes()
    row = ScoreCache(tmp_path).read(bench.identity, SCORER, text=True).to_pylist()[0]
    assert row["reasoning"] == "my key is [redacted]!" and "[redacted]" in row["meta"]


def test_credential_environment_values_are_redacted_without_registration(
        tmp_path, bench, monkeypatch):
    secret = "env-secret-value-42"
    monkeypatch.setattr(redaction, "_SECRETS", set())
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", secret)
    rec = dataclasses.replace(records(bench)[0], reasoning=f"x {secret} y")
    ScoreCache(tmp_path).append([rec])
    assert all(secret.encode() not in p.read_bytes() for p in tmp_path.glob("*.parquet"))
