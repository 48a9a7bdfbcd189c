"""A full disk loses no paid answer: the scheduler's free-space margin, answers held in memory
while a write finds no room, claims released on every way out, and the claims progress line.

Free space comes through the seam of :class:`SpaceGuard` (a function of the folder) and a full
disk through a store whose writes raise ``ENOSPC``; the real thing, a small tmpfs under a real
sweep, is tests/jobs/test_disk_full.py.
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pluralign.engine.judges import ComparativeJudge, JudgeSettings
from pluralign.engine.run.scheduler import SchedulerConfig
from pluralign.engine.store.cache import ScoreCache
from pluralign.engine.store.claims import Claims
from pluralign.engine.store.space import SpaceGuard, is_disk_full, write_what_fits
from tests.engine.test_scheduler import FAST, ScriptedBackend, bench_of, run


def enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


class FullDisk:
    """A score cache whose writes raise ENOSPC while ``full`` (and count their attempts)."""

    def __init__(self, root: Path, full_for: int | None = None) -> None:
        self.cache = ScoreCache(root)
        self.full_for = full_for
        """Failed attempts before room appears (None: never)."""
        self.attempts = 0

    def append(self, records: Sequence[Mapping[str, object]]) -> object:
        self.attempts += 1
        if self.full_for is None or self.attempts <= self.full_for:
            raise enospc()
        return self.cache.append(records)

    def completed_keys(self, benchmark: str | None = None,
                       scorer: str | None = None) -> set[str]:
        return self.cache.completed_keys(benchmark, scorer)


def stored_items(root: Path, judge: ComparativeJudge) -> set[str]:
    done = ScoreCache(root).completed_keys(judge.bench.identity, judge.identity)
    items = judge.items(range(judge.bench.n_scenarios), 1)
    return {it.key for it in items if all(k in done for k in it.row_keys)}


def no_claims_left(root: Path) -> bool:
    folder = root / ".claims"
    return not folder.exists() or not any(folder.iterdir())


def paid(backend: ScriptedBackend) -> set[str]:
    return {k for k, n in backend.calls.items() if n}


def test_a_small_free_space_figure_stops_before_anything_is_sent(tmp_path: Path) -> None:
    judge = ComparativeJudge(bench_of(8), JudgeSettings(model="m"))
    backend = ScriptedBackend(judge.bench)
    space = SpaceGuard(tmp_path, free=lambda folder: 10_000)
    report = run(judge, backend, ScoreCache(tmp_path), claims=Claims(tmp_path), space=space)
    assert not backend.calls and report.requests == 0
    assert report.stop_kind == "disk" and not report.complete and report.lost == 0
    assert report.stopped is not None and report.stopped.startswith("disk full: ")
    assert f"{tmp_path} had 9.8 KiB free, under the " in report.stopped
    assert "kept for the answers in flight;" in report.stopped  # the same figure now
    assert "0 answers stored this run" in report.stopped and report.disk_free == 10_000
    assert report.not_started == report.items
    assert no_claims_left(tmp_path)


def test_sending_stops_at_the_margin_and_every_paid_answer_is_stored(tmp_path: Path) -> None:
    judge = ComparativeJudge(bench_of(40), JudgeSettings(model="m"))
    capacity = 200_000 + 16_384 + 60_000  # room for about half of the parts

    def free(folder: Path) -> int:  # a small disk: what the parts take is gone
        used = sum(p.stat().st_size for p in tmp_path.glob("*.parquet"))
        return capacity - used

    backend = ScriptedBackend(judge.bench)
    space = SpaceGuard(tmp_path, free=free, reserve=200_000)
    report = run(judge, backend, ScoreCache(tmp_path), claims=Claims(tmp_path), space=space)
    stored = stored_items(tmp_path, judge)
    print(f"\nmargin run: {len(paid(backend))} paid, {len(stored)} stored of {report.items}")
    assert report.stop_kind == "disk" and 0 < report.completed < report.items
    assert paid(backend) == stored and report.completed == len(stored)
    assert report.lost == report.unstored == 0
    assert free(tmp_path) >= space.reserve  # the margin held
    assert no_claims_left(tmp_path)
    # Room again: the rerun buys exactly what is missing, nothing twice.
    rerun = ScriptedBackend(judge.bench)
    second = run(judge, rerun, ScoreCache(tmp_path), claims=Claims(tmp_path))
    assert second.complete and not (paid(rerun) & paid(backend))
    assert len(paid(rerun)) == report.items - len(stored)


def test_a_write_that_finds_the_disk_full_holds_the_answers_until_room_appears(
        tmp_path: Path) -> None:
    judge = ComparativeJudge(bench_of(12), JudgeSettings(model="m"))
    backend = ScriptedBackend(judge.bench)
    store = FullDisk(tmp_path, full_for=6)
    log = io.StringIO()
    cfg = replace(FAST, flush_seconds=0.05, disk_wait_seconds=30)
    report = run(judge, backend, store, config=cfg, claims=Claims(tmp_path), log=log)
    text = log.getvalue()
    assert report.stop_kind == "disk" and report.unstored == 0 and report.lost == 0
    assert paid(backend) == stored_items(tmp_path, judge) and report.completed == len(paid(backend))
    assert "answers held in memory until they can be written" in text
    assert "the held answers are stored now" in text
    assert no_claims_left(tmp_path)


def test_answers_that_can_never_be_written_are_counted_never_dropped(tmp_path: Path) -> None:
    judge = ComparativeJudge(bench_of(6), JudgeSettings(model="m"))
    backend = ScriptedBackend(judge.bench)
    cfg = replace(FAST, flush_seconds=0.05, disk_wait_seconds=0.2)
    report = run(judge, backend, FullDisk(tmp_path), config=cfg, claims=Claims(tmp_path))
    n = len(paid(backend))
    assert n > 0 and report.unstored == n and report.lost == n and report.completed == 0
    assert not report.complete and report.stop_kind == "disk"
    assert report.stopped is not None
    assert f"0 answers stored this run, {n} paid answers could not be stored" in report.stopped
    assert "No space left on device" in report.stopped
    assert no_claims_left(tmp_path)  # released, so a rerun can buy them


def test_claims_are_released_when_the_cache_cannot_be_written_at_all(tmp_path: Path) -> None:
    class Broken(FullDisk):
        def append(self, records: Sequence[Mapping[str, object]]) -> object:
            raise PermissionError(errno.EACCES, "Permission denied")

    judge = ComparativeJudge(bench_of(4), JudgeSettings(model="m"))
    with pytest.raises(PermissionError):
        run(judge, ScriptedBackend(judge.bench), Broken(tmp_path), claims=Claims(tmp_path))
    assert no_claims_left(tmp_path)


def test_write_what_fits_stores_as_much_as_there_is_room_for() -> None:
    written: list[list[int]] = []

    def small_room(chunk: Sequence[int]) -> None:
        if len(chunk) > 3:
            raise enospc()
        written.append(list(chunk))

    left, error = write_what_fits(small_room, list(range(10)))
    assert left == [] and error is None and [x for c in written for x in c] == list(range(10))

    def none(chunk: Sequence[int]) -> None:
        raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")

    left, error = write_what_fits(none, [1, 2, 3])
    assert left == [1, 2, 3] and error is not None and is_disk_full(error)

    def denied(chunk: Sequence[int]) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):
        write_what_fits(denied, [1])
    assert not is_disk_full(PermissionError(errno.EACCES, "no"))


def test_the_margin_learns_the_size_of_an_answer(tmp_path: Path) -> None:
    part = tmp_path / "part.parquet"
    part.write_bytes(b"x" * 60_000)
    space = SpaceGuard(tmp_path, free=lambda folder: 10**9, part_bytes=16_384)
    before = space.margin(100)
    space.learn(part, 100)
    assert space.item_bytes == pytest.approx((60_000 - 8_192) / 100, rel=0.2)
    assert space.margin(100) < before


def test_the_progress_line_says_whose_claims_it_waits_on_and_a_future_lease_expires(
        tmp_path: Path) -> None:
    judge = ComparativeJudge(bench_of(3), JudgeSettings(model="m"))
    items = judge.items(range(3), 1)
    other = Claims(tmp_path)
    assert other.try_claim(items[0].key)  # a live process (ours) that never beats again
    future = time.time() + 3600
    os.utime(tmp_path / ".claims" / f"{items[0].key}.claim", (future, future))
    log = io.StringIO()
    cfg = SchedulerConfig(max_in_flight=4, batch_size=2, flush_seconds=0.05,
                          progress_seconds=0.1, claim_poll_seconds=0.05)
    backend = ScriptedBackend(judge.bench)

    async def go() -> Any:
        return await asyncio.wait_for(asyncio.to_thread(
            run, judge, backend, ScoreCache(tmp_path), config=cfg, log=log,
            claims=Claims(tmp_path, lease_seconds=0.6)), timeout=60)

    report = asyncio.run(go())
    text = log.getvalue()
    print("\n" + next(line for line in text.splitlines() if "waited on" in line))
    assert report.complete and items[0].key in paid(backend)  # taken over after the lease
    assert f", 1 items claimed by {other.host} pid {other.pid}, waited on for 0m0" in text
    assert "s (lease 0.6s)" in text
    assert "ETA ?" in text


def test_a_claim_that_finds_the_disk_full_stops_sending_before_anything_is_bought(
        tmp_path: Path) -> None:
    class NoRoom(Claims):
        def try_claim(self, key: str) -> bool:
            raise enospc()

    judge = ComparativeJudge(bench_of(4), JudgeSettings(model="m"))
    backend = ScriptedBackend(judge.bench)
    report = run(judge, backend, ScoreCache(tmp_path), claims=NoRoom(tmp_path))
    assert not backend.calls and report.stop_kind == "disk" and report.lost == 0
    assert report.not_started == report.items and report.stopped is not None
    assert "0 answers stored this run" in report.stopped


def test_a_measured_figure_is_reused_less_what_was_written_and_no_room_is_measured_again(
        tmp_path: Path) -> None:
    calls: list[int] = []
    figures = iter([1_000_000, 50_000, 2_000_000])

    def free(folder: Path) -> int:
        calls.append(1)
        return next(figures)

    space = SpaceGuard(tmp_path, free=free, reserve=0, part_bytes=0, item_bytes=100,
                       refresh_seconds=3600)
    assert all(space.room_for(10) for _ in range(100)) and len(calls) == 1
    part = tmp_path / "part.parquet"
    part.write_bytes(b"x" * 990_000)
    space.learn(part, 10)  # this process's own write counts at once
    assert not space.room_for(1)  # too little left by the cached figure: measured again
    assert len(calls) == 2 and space.shortfall == (50_000, space.margin(1))
    assert space.room_for(1) and len(calls) == 3  # a figure that found no room is not reused
