"""The one part store under every cache: part names, the latest-wins rule, the checks on read,
redaction on write, the shared index, compaction, verify and gc."""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pluralign.engine.store.parts as parts_mod
from pluralign.engine.errors import CacheSchemaError, InputError
from pluralign.engine.store import redaction
from pluralign.engine.store.hashing import digest
from pluralign.engine.store.parts import (
    CacheCorruptError,
    PartLayout,
    PartStore,
    gc,
    part_name,
    part_order,
    stamp_of,
    verify,
    write_part,
)
from pluralign.schemas.arrow import with_version


def toy_key(name: str, n: int) -> str:
    return digest(["toy", name, int(n)], 16)


TOY_SCHEMA = with_version(pa.schema([
    pa.field("key", pa.string(), nullable=False),
    pa.field("name", pa.string(), nullable=False),
    pa.field("n", pa.int32(), nullable=False),
    pa.field("value", pa.float64()),
    pa.field("error", pa.string()),
    pa.field("note", pa.string()),
    pa.field("texts", pa.list_(pa.string())),
]), "toy")
TOY = PartLayout(kind="toy", schema=TOY_SCHEMA, key_fields=("name", "n"), key_of=toy_key,
                 index_columns=("key", "name", "n", "value", "error"), filters=("name",),
                 what="toy part", fix="start a new toy folder")


def rows(*specs: tuple[str, int, float | None, str | None], note: str = "") -> pa.Table:
    """Rows (name, n, value, error); ``note`` and ``texts`` name the row."""
    return pa.Table.from_pylist(
        [{"key": toy_key(nm, n), "name": nm, "n": n, "value": v, "error": e,
          "note": f"{note}{nm}{n}", "texts": [f"t{nm}{n}"]} for nm, n, v, e in specs],
        schema=TOY_SCHEMA)


@pytest.fixture(autouse=True)
def fresh_indexes():
    parts_mod._INDEXES.clear()
    yield
    parts_mod._INDEXES.clear()


def winners(store: PartStore) -> dict[tuple[str, int], tuple[float | None, str | None, str]]:
    return {(r["name"], r["n"]): (r["value"], r["error"], r["note"])
            for r in store.latest().to_pylist()}


# ---------------------------------------------------------------- names and order


def test_part_name_format_is_pinned():
    name = part_name(123)
    assert re.fullmatch(r"part-00000000000000000123-\d{7}-[0-9a-f]{12}\.parquet", name)
    assert name.split("-")[2] == f"{os.getpid():07d}"
    assert stamp_of(name) == 123 and stamp_of(part_name()) > 10**18


def test_names_of_earlier_forms_have_no_stamp_and_sort_first():
    old_choice = f"part-{uuid.uuid4().hex}.parquet"
    old_generation = f"part-{os.getpid()}-{uuid.uuid4().hex[:12]}.parquet"
    stamped = [part_name(5), part_name(1), part_name(1)]
    assert stamp_of(old_choice) is None and stamp_of(old_generation) is None
    ordered = sorted([*stamped, old_generation, old_choice], key=part_order)
    assert ordered[:2] == sorted([old_choice, old_generation])
    assert [stamp_of(n) for n in ordered[2:]] == [1, 1, 5]
    assert ordered[2] < ordered[3]  # equal stamps: by name


# ---------------------------------------------------------------- latest wins


def test_latest_success_wins_and_is_never_undone_by_a_failure(tmp_path):
    store = PartStore(tmp_path, TOY)
    store.append(rows(("a", 0, 1.0, None), ("b", 0, None, "timeout"), ("c", 0, None, "e1")))
    store.append(rows(("a", 0, 2.0, None), ("b", 0, 3.0, None), ("c", 0, None, "e2"),
                      note="second "))
    store.append(rows(("a", 0, None, "rate limited"), ("b", 0, None, "503"), note="third "))
    got = winners(store)
    assert got[("a", 0)] == (2.0, None, "second a0")  # the later success
    assert got[("b", 0)] == (3.0, None, "second b0")  # a success, kept over a later failure
    assert got[("c", 0)] == (None, "e2", "second c0")  # no success: the latest failure
    ok, bad = store.resolve()
    assert set(ok["key"].to_pylist()) == {toy_key("a", 0), toy_key("b", 0)}
    assert bad["key"].to_pylist() == [toy_key("c", 0)]


def test_rows_within_one_part_are_in_row_order(tmp_path):
    store = PartStore(tmp_path, TOY)
    store.append(rows(("a", 0, 1.0, None), ("a", 0, 2.0, None), note="x"))
    assert winners(store)[("a", 0)][0] == 2.0


def test_a_stamped_part_wins_over_parts_of_earlier_name_forms(tmp_path):
    # An earlier version's part whose random name sorts after the stamped one's.
    pq.write_table(rows(("a", 0, 1.0, None), ("b", 0, 1.0, None)),
                   tmp_path / f"part-{'f' * 32}.parquet")
    write_part(tmp_path, rows(("a", 0, 2.0, None)), stamp=1)
    got = winners(PartStore(tmp_path, TOY))
    assert got[("a", 0)][0] == 2.0 and got[("b", 0)][0] == 1.0


def test_filters_narrow_resolution(tmp_path):
    store = PartStore(tmp_path, TOY)
    store.append(rows(("a", 0, 1.0, None), ("b", 0, 1.0, None), ("b", 1, None, "x")))
    ok, bad = store.resolve("b")
    assert ok["name"].to_pylist() == ["b"] and bad["name"].to_pylist() == ["b"]
    assert store.latest("a")["n"].to_pylist() == [0]
    with pytest.raises(TypeError, match="filters"):
        store.resolve("a", "b")


# ---------------------------------------------------------------- checks


def test_keys_are_checked_before_writing(tmp_path):
    store = PartStore(tmp_path, TOY)
    table = rows(("a", 0, 1.0, None), ("a", 1, 1.0, None))
    forged = table.set_column(0, TOY_SCHEMA.field("key"),
                              pa.array([toy_key("a", 0), "0" * 16], pa.string()))
    with pytest.raises(InputError, match=r"record 1.*'key'"):
        store.append(forged)
    with pytest.raises(InputError, match="missing"):
        store.append(table.drop_columns(["note"]))
    assert store.parts() == []


def test_a_part_with_keys_not_matching_its_fields_is_refused_naming_it(tmp_path):
    PartStore(tmp_path, TOY).append(rows(("a", 0, 1.0, None)))
    table = rows(("b", 0, 1.0, None), ("b", 1, 1.0, None))
    forged = table.set_column(0, TOY_SCHEMA.field("key"),
                              pa.array(table["key"].to_pylist()[::-1], pa.string()))
    bad = tmp_path / part_name()
    pq.write_table(forged, bad)
    parts_mod._INDEXES.clear()  # a fresh process
    with pytest.raises(CacheCorruptError) as err:
        PartStore(tmp_path, TOY).resolve()
    assert str(bad) in str(err.value)
    assert "2 of 2 rows have a key that does not match their fields" in str(err.value)


def test_kind_version_and_columns_are_checked_naming_the_file(tmp_path):
    store = PartStore(tmp_path, TOY)
    other_kind = tmp_path / part_name(1)
    pq.write_table(rows().cast(with_version(TOY_SCHEMA, "scores")), other_kind)
    with pytest.raises(CacheSchemaError, match=rf"{other_kind.name}.*'scores'.*new toy folder"):
        store.resolve()
    other_kind.unlink()
    parts_mod._INDEXES.clear()
    wrong_type = tmp_path / part_name(2)
    schema = pa.schema([pa.field("n", pa.int64()) if f.name == "n" else f for f in TOY_SCHEMA],
                       metadata=TOY_SCHEMA.metadata)
    pq.write_table(rows(("a", 0, 1.0, None)).cast(schema), wrong_type)
    with pytest.raises(CacheCorruptError, match=rf"{wrong_type.name}: not a toy part: column "
                                                r"'n' is int64, expected int32"):
        PartStore(tmp_path, TOY).resolve()
    wrong_type.write_bytes(b"not parquet")
    parts_mod._INDEXES.clear()
    with pytest.raises(CacheCorruptError, match="not a readable toy part"):
        PartStore(tmp_path, TOY).resolve()


# ---------------------------------------------------------------- redaction, index


def test_secrets_are_redacted_from_text_and_list_columns_but_not_keys(tmp_path, monkeypatch):
    secret = "sk-toy-secret-0123456789"
    monkeypatch.setattr(redaction, "_SECRETS", set())
    parts_mod.register_secret(secret)
    table = pa.Table.from_pylist([{
        "key": toy_key(secret, 0), "name": secret, "n": 0, "value": None,
        "error": f"HTTP 401 for {secret}", "note": f"key={secret}",
        "texts": [f"I was told {secret}", "clean"]}], schema=TOY_SCHEMA)
    path = PartStore(tmp_path, TOY).append(table)
    stored = pq.read_table(path).to_pylist()[0]
    assert stored["name"] == secret and stored["key"] == toy_key(secret, 0)  # key fields kept
    assert stored["error"] == "HTTP 401 for [redacted]" and stored["note"] == "key=[redacted]"
    assert stored["texts"] == ["I was told [redacted]", "clean"]


def test_the_index_sees_parts_written_and_removed_elsewhere(tmp_path):
    store = PartStore(tmp_path, TOY)
    store.append(rows(("a", 0, 1.0, None)))
    other = write_part(tmp_path, rows(("b", 0, 2.0, None)))  # another process's append
    assert set(winners(store)) == {("a", 0), ("b", 0)}
    other.unlink()  # compacted away elsewhere
    assert set(winners(store)) == {("a", 0)}
    assert PartStore(tmp_path, TOY)._index is store._index  # one index per directory and kind


def test_text_columns_are_read_on_demand_for_the_rows_asked(tmp_path):
    store = PartStore(tmp_path, TOY)
    store.append(rows(("a", 0, 1.0, None), ("b", 0, 1.0, None), note="p1 "))
    store.append(rows(("b", 0, 5.0, None), note="p2 "))
    ok, _ = store.resolve()
    assert "note" not in ok.column_names
    full = store.with_text(ok)
    assert dict(zip(full["name"].to_pylist(), full["note"].to_pylist(), strict=True)) == {
        "a": "p1 a0", "b": "p2 b0"}
    assert store.latest(keys=[toy_key("b", 0)])["texts"].to_pylist() == [["tb0"]]


# ---------------------------------------------------------------- compaction, verify, gc


def test_compaction_keeps_every_answer_and_later_parts_still_win(tmp_path):
    store = PartStore(tmp_path, TOY)
    pq.write_table(rows(("z", 0, 9.0, None)), tmp_path / f"part-{'0' * 32}.parquet")  # old form
    store.append(rows(("a", 0, 1.0, None), ("b", 0, None, "e")))
    store.append(rows(("a", 0, 2.0, None), ("b", 0, None, "e2")))
    before = winners(store)
    merged = store.compact()
    assert merged is not None and store.parts() == [merged]
    assert stamp_of(merged.name) is not None
    parts_mod._INDEXES.clear()
    fresh = PartStore(tmp_path, TOY)
    assert winners(fresh) == before
    fresh.append(rows(("a", 0, 3.0, None)))
    assert winners(fresh)[("a", 0)][0] == 3.0
    assert PartStore(tmp_path / "empty", TOY).compact() is None


def test_verify_and_gc(tmp_path):
    store = PartStore(tmp_path, TOY)
    store.append(rows(("a", 0, 1.0, None), ("b", 0, 1.0, None)))
    store.append(rows(("a", 0, 2.0, None)))
    stale = tmp_path / f".tmp-{part_name(1)}.tmp"
    legacy = tmp_path / ".part-0123.parquet.abc123.tmp"  # an earlier version's temp name
    fresh = tmp_path / f".tmp-{part_name(2)}.tmp"
    for p in (stale, legacy, fresh):
        p.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(legacy, (old, old))
    check = verify(tmp_path, TOY)
    assert (check.rows, check.superseded, check.bad) == (3, 1, [])
    assert check.temp_files == sorted([stale, legacy, fresh])
    report = gc(tmp_path, TOY, min_age=600)
    assert sorted(report.temp_files_removed) == sorted([stale, legacy]) and fresh.exists()
    assert (report.rows_before, report.rows_after, report.parts_before, report.parts_after) == (
        3, 2, 2, 1)
    assert winners(PartStore(tmp_path, TOY))[("a", 0)][0] == 2.0


def test_gc_refuses_while_a_part_is_bad_and_changes_nothing(tmp_path):
    store = PartStore(tmp_path, TOY)
    store.append(rows(("a", 0, 1.0, None)))
    store.append(rows(("a", 0, 2.0, None)))
    bad = tmp_path / part_name()
    bad.write_bytes(b"garbage")
    stale = tmp_path / f".tmp-{part_name(1)}.tmp"
    stale.write_bytes(b"x")
    os.utime(stale, (0, 0))
    listing = sorted(p.name for p in tmp_path.iterdir())
    check = verify(tmp_path, TOY)
    assert [p.path for p in check.bad] == [bad] and check.superseded == 0
    with pytest.raises(CacheCorruptError, match=rf"{bad.name}.*nothing was changed"):
        gc(tmp_path, TOY, min_age=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == listing


def test_a_layout_must_keep_its_key_fields_in_memory():
    with pytest.raises(ValueError, match="index columns"):
        PartLayout(kind="toy", schema=TOY_SCHEMA, key_fields=("name", "n"), key_of=toy_key,
                   index_columns=("key", "name", "error"))


def test_a_store_must_be_a_directory(tmp_path: Path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="must be a directory"):
        PartStore(tmp_path / "f", TOY)
