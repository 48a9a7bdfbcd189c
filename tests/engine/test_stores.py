"""The choice and generation caches on the one part store: caches written by earlier versions
still read (and newer parts win over them), keys are checked, texts redacted, and the
generation cache serves the scheduler as a ResultStore."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import replace

import pyarrow as pa
import pytest

import pluralign.engine.store.parts as parts_mod
from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.run.backend import GenerationRequest, Message
from pluralign.engine.store import redaction
from pluralign.engine.store.choices import CHOICE_SCHEMA, ChoiceCache, choice_key
from pluralign.engine.store.files import write_parquet
from pluralign.engine.store.generations import CachedGeneration, GenerationCache, work_key
from pluralign.engine.store.parts import CacheCorruptError, stamp_of
from pluralign.schemas.spica import GENERATION_SCHEMA

SCORER = "judge#abc"
TARGETS = [json.dumps({"a0": 1.0}), json.dumps({"a1": 1.0})]


@pytest.fixture(autouse=True)
def fresh_indexes():
    parts_mod._INDEXES.clear()
    yield
    parts_mod._INDEXES.clear()


@pytest.fixture
def bench():
    return synthetic_benchmark(3, (2, 2), 2, 5, seed=4)


def choice_row(bench, s, target, sample, choice, error=None, reasoning="r"):
    sc = bench.scenarios[s].id
    return {"key": choice_key(bench.identity, sc, target, SCORER, sample),
            "benchmark": bench.identity, "scenario": sc, "target": target, "scorer": SCORER,
            "sample": sample, "choice": choice, "reasoning": reasoning, "error": error,
            "meta": "{}"}


def old_choice_part(root, rows):
    """A part as earlier versions wrote it: ``part-<uuid32>.parquet``, no stamp."""
    table = pa.Table.from_pylist(rows, schema=CHOICE_SCHEMA)
    return write_parquet(table, root / "choices" / f"part-{uuid.uuid4().hex}.parquet")


def generation(model="m", text="hello", seed=0, error=None, meta=""):
    req = GenerationRequest("", (Message("user", f"say {seed}"),), seed=seed)
    return CachedGeneration(work_key(model, req), "aligned", model, req.fingerprint(),
                            () if error else (text,), error, meta)


def old_generation_part(root, records):
    """A part as earlier versions wrote it: ``part-<pid>-<uuid12>.parquet``, no stamp."""
    cols = {"key": [r.key for r in records], "task": [r.task for r in records],
            "model": [r.model for r in records], "request": [r.request for r in records],
            "texts": [list(r.texts) for r in records], "error": [r.error for r in records],
            "meta": [r.meta for r in records]}
    table = pa.Table.from_pydict(cols, schema=GENERATION_SCHEMA)
    return write_parquet(table, root / f"part-{os.getpid()}-{uuid.uuid4().hex[:12]}.parquet")


# ---------------------------------------------------------------- backward compatibility


def test_choice_parts_of_earlier_versions_read_and_newer_parts_win(tmp_path, bench):
    t = TARGETS[0]
    old = old_choice_part(tmp_path, [choice_row(bench, 0, t, 0, 1), choice_row(bench, 1, t, 0, 0),
                                     choice_row(bench, 2, t, 0, None, error="503")])
    assert stamp_of(old.name) is None
    cache = ChoiceCache(tmp_path)
    assert cache.choices(bench, SCORER, [t], 1)[:, 0].tolist() == [1, 0, -1]
    cache.append([choice_row(bench, 0, t, 0, 0), choice_row(bench, 1, t, 0, None, error="x"),
                  choice_row(bench, 2, t, 0, 1)])
    parts_mod._INDEXES.clear()  # a fresh process
    fresh = ChoiceCache(tmp_path)
    # the newer success wins; an old success is not undone by a newer failure
    assert fresh.choices(bench, SCORER, [t], 1)[:, 0].tolist() == [0, 0, 1]
    assert len(fresh.completed_keys(bench.identity, SCORER)) == 3
    assert fresh.parts()[0] == old  # unstamped: oldest


def test_generation_parts_of_earlier_versions_read_and_newer_parts_win(tmp_path):
    a, b, c = generation(seed=1, text="old a"), generation(seed=2, text="old b"), \
        generation(seed=3, error="fatal: too long")
    old = old_generation_part(tmp_path, [a, b, c])
    assert stamp_of(old.name) is None
    cache = GenerationCache(tmp_path)
    assert cache.load() == {a.key: a, b.key: b, c.key: c}
    newer = [replace(a, texts=("new a",)), replace(b, texts=(), error="503"),
             replace(c, texts=("now c",), error=None)]
    cache.append(newer)
    parts_mod._INDEXES.clear()
    fresh = GenerationCache(tmp_path)
    got = fresh.load()
    assert got[a.key].texts == ("new a",)  # newer stamped part wins
    assert got[b.key] == b  # a success is never replaced by a later failure
    assert got[c.key].ok and got[c.key].texts == ("now c",)
    assert set(fresh.lookup([a.key, c.key, "nope"])) == {a.key, c.key}


# ---------------------------------------------------------------- choices


def test_choice_read_is_the_winning_row_per_key_with_texts(tmp_path, bench):
    t = TARGETS[1]
    cache = ChoiceCache(tmp_path)
    cache.append([choice_row(bench, 0, t, 0, None, error="timeout", reasoning=None),
                  choice_row(bench, 0, t, 1, 1, reasoning="first")])
    cache.append([choice_row(bench, 0, t, 0, 1, reasoning="retried"),
                  choice_row(bench, 0, t, 1, 0, reasoning="second")])
    cache.append([{**choice_row(bench, 1, t, 0, None, error="bad answer", reasoning=None),
                   "key": None}])
    table = cache.read(bench.identity, SCORER)
    assert table.schema.names == CHOICE_SCHEMA.names
    got = {(r["scenario"], r["sample"]): (r["choice"], r["reasoning"], r["error"])
           for r in table.to_pylist()}
    s0, s1 = bench.scenarios[0].id, bench.scenarios[1].id
    assert got == {(s0, 0): (1, "retried", None), (s0, 1): (0, "second", None),
                   (s1, 0): (None, None, "bad answer")}
    assert cache.read("other", SCORER).num_rows == 0
    assert cache.completed_keys(bench.identity, "nobody") == set()
    # majority over samples 0..1 is a tie (1, 0): the lowest index wins; duplicate targets
    out = cache.choices(bench, SCORER, [t, TARGETS[0], t], 2)
    assert out.shape == (3, 3) and out[0].tolist() == [0, -1, 0] and out[1, 0] == -1


def test_choice_rows_are_checked_before_writing(tmp_path, bench):
    cache = ChoiceCache(tmp_path)
    row = choice_row(bench, 0, TARGETS[0], 0, 1)
    with pytest.raises(InputError, match=r"record 1.*'key'"):
        cache.append([row, {**row, "sample": 1}])
    with pytest.raises(InputError, match=r"record 0.*'sample'"):
        cache.append([{**row, "key": None, "sample": -1}])
    with pytest.raises(InputError, match="'target'"):
        cache.append([{**row, "key": None, "target": None}])
    assert cache.parts() == []


def test_a_planted_choice_part_with_forged_keys_is_refused(tmp_path, bench):
    rows = [choice_row(bench, s, TARGETS[0], 0, 1) for s in range(3)]
    rows[0]["key"], rows[1]["key"] = rows[1]["key"], rows[0]["key"]
    bad = old_choice_part(tmp_path, rows)
    with pytest.raises(CacheCorruptError, match=rf"{bad.name}.*2 of 3 rows have a key"):
        ChoiceCache(tmp_path).completed_keys()


# ---------------------------------------------------------------- generations


def test_generation_cache_is_a_result_store(tmp_path):
    cache = GenerationCache(tmp_path)
    ok, failed = generation(seed=1), generation(seed=2, error="503")
    row = {"task": ok.task, "model": ok.model, "request": ok.request, "texts": list(ok.texts),
           "error": None, "meta": "{}"}  # key left out: computed
    fail = {**row, "request": failed.request, "texts": [], "error": "503", "key": failed.key}
    assert cache.append([row, fail]) is not None
    assert cache.completed_keys() == {ok.key}
    assert cache.completed_keys("any benchmark", "any scorer") == {ok.key}
    assert cache.lookup([ok.key, failed.key]) == {ok.key: replace(ok, meta="{}")}
    with pytest.raises(InputError, match=r"record 0.*'key'"):
        cache.append([{**row, "key": failed.key}])
    with pytest.raises(InputError, match=r"record 0.*'texts'"):
        cache.append([{**row, "texts": "not a list"}])
    assert cache.append([]) is None and len(cache.parts()) == 1


def test_generated_texts_are_redacted_of_secrets(tmp_path, monkeypatch):
    secret = "sk-gen-secret-abcdef0123"
    monkeypatch.setattr(redaction, "_SECRETS", set())
    parts_mod.register_secret(secret)
    rec = replace(generation(), texts=(f"my key is {secret}",), meta=json.dumps({"s": secret}))
    GenerationCache(tmp_path).append([rec, generation(seed=5, error=f"401 {secret}")])
    assert all(secret.encode() not in p.read_bytes() for p in tmp_path.iterdir())
    parts_mod._INDEXES.clear()
    got = GenerationCache(tmp_path).load()[rec.key]
    assert got.texts == ("my key is [redacted]",) and "[redacted]" in got.meta


def test_a_planted_generation_part_with_forged_keys_is_refused(tmp_path):
    a, b = generation(seed=1), generation(seed=2)
    bad = old_generation_part(tmp_path, [replace(a, key=b.key), replace(b, key=a.key)])
    with pytest.raises(CacheCorruptError, match=rf"{bad.name}.*2 of 2 rows have a key"):
        GenerationCache(tmp_path).lookup([a.key])

