"""A sweep against real failures, as a user meets them: a dead endpoint, Ctrl-C, kill -9, two
sweeps on one cache, and a local Ray runtime that must listen on loopback only.

Every sweep here is a real ``pluralign sweep`` subprocess sending real HTTP to the fake server
on 127.0.0.1 (which counts every request); signals go to that subprocess, or to its whole
process group as a terminal's Ctrl-C does (a local Ray runtime the sweep started has process
groups of its own, so the group's signal reaches its driver alone).
Figures are printed (``-s`` shows them), never asserted against a clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pluralign.actors.testing.fake_server import FakeOpenAIServer
from tests.fake_openai import FAKE_KEY, FAKE_KEY_ENV, free_port, make_fake_server

__all__ = ["make_fake_server"]

BENCH = "synthetic:S=60,A=2,L=3"
"""60 scenarios, 2 attributes: 120 comparative items and a handful of targets."""
ITEMS = 120


def sweep_cmd(url: str, cache: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pluralign", "sweep", "--benchmark", BENCH,
            "--scorer", "comparative-regression", "--zero-shot", "--targets", "all",
            "--backend", "openai", "--base-url", url, "--model", "fake",
            "--api-key-env", FAKE_KEY_ENV, "--cache", str(cache), "--out", str(out), *extra]


def env_of(tmp_path: Path) -> dict[str, str]:
    # Ray's socket paths must stay under 107 bytes: a short folder beside the test's.
    ray_tmp = Path(tempfile.gettempdir()) / f"plr-{abs(hash(str(tmp_path))) % 10**8}"
    env = {**os.environ, FAKE_KEY_ENV: FAKE_KEY, "PLURALIGN_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture(autouse=True)
def _no_ray_tmpdir_left(tmp_path: Path) -> Iterator[None]:
    """A Ray sweep's RAY_TMPDIR (env_of) goes with its test, passed or failed: a failed check
    of an interrupted run used to leave its session folder in /tmp."""
    yield
    shutil.rmtree(env_of(tmp_path)["RAY_TMPDIR"], ignore_errors=True)


def start(cmd: list[str], tmp_path: Path, name: str) -> subprocess.Popen[str]:
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, env=env_of(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def wait(proc: subprocess.Popen[str], timeout: float = 240) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def ok_fingerprints(server: FakeOpenAIServer) -> Counter[str]:
    return Counter(server.stats()["ok_by_fingerprint"])


def answered_before(server: FakeOpenAIServer, n: int, proc: subprocess.Popen[str],
                    timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while sum(ok_fingerprints(server).values()) < n:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"sweep ended or stalled before {n} answers (rc {proc.poll()})")
        time.sleep(0.05)


def resent_on_rerun(server: FakeOpenAIServer, cache: Path, tmp_path: Path,
                    first: Counter[str]) -> set[str]:
    """Rerun the sweep on the same cache (the server's counts reset, its transient faults
    off): it must succeed; the fingerprints it sent that the first run had answered already.
    With the faults on, an item of the rerun would fail all its sends now and then (0.3 ** 6
    per item at 30 % 5xx), which says nothing about what the first run stored."""
    server.reset()
    server.configure(fault_429=0.0, fault_5xx=0.0, fault_timeout=0.0, fault_reset=0.0)
    rerun = start(sweep_cmd(server.url, cache, tmp_path / "out2", "--no-ray"), tmp_path,
                  "rerun")
    assert wait(rerun) == 0, log_of(tmp_path, "rerun")[-2000:]
    return set(ok_fingerprints(server)) & set(first)


def log_of(tmp_path: Path, name: str) -> str:
    return (tmp_path / f"{name}.log").read_text()


def test_an_unreachable_endpoint_stops_in_seconds_with_one_line(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    t0 = time.monotonic()
    proc = subprocess.run(sweep_cmd(dead, tmp_path / "cache", tmp_path / "out", "--no-ray"),
                          env=env_of(tmp_path), capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - t0
    last = proc.stderr.strip().splitlines()[-1]
    print(f"\nunreachable endpoint: exit {proc.returncode} after {seconds:.2f} s: {last}")
    assert proc.returncode == 2
    assert last.startswith("error: ") and "connection refused" in last and dead in last
    assert "Nothing was re-aligned" in last
    assert not (tmp_path / "out" / "per_target.parquet").exists()  # no misleading result
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["state"] == "incomplete" and summary["missing_items"] == ITEMS
    assert "sets" not in summary
    assert "Traceback" not in proc.stderr


def test_failures_are_summarised_by_reason_and_nothing_is_realigned(
        tmp_path: Path, make_fake_server: Callable[..., FakeOpenAIServer]) -> None:
    server = make_fake_server(fault_truncated=0.3, seed=3)
    proc = subprocess.run(sweep_cmd(server.url, tmp_path / "cache", tmp_path / "out",
                                    "--no-ray"),
                          env=env_of(tmp_path), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "x truncated: e.g. truncated: answer truncated at max_tokens" in proc.stderr
    assert "raise --max-tokens" in proc.stderr or "raise `max_tokens`" in proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    failed = summary["scoring"]["failures"]["truncated"]
    assert failed == summary["missing_items"] > 0
    # Truncation is not retried: one send per truncated item.
    stats = server.stats()
    truncated = [e for e in stats["events"] if e["fault"] == "truncated"]
    assert len(truncated) == failed
    assert not (tmp_path / "out" / "per_target.parquet").exists()


IN_FLIGHT_MARGIN = 0.02
"""Seconds after the signal within which an arriving request still counts as in flight."""


def check_interrupted_run(server: FakeOpenAIServer, cache: Path, tmp_path: Path,
                          t_signal: float, label: str) -> str:
    """After a Ctrl-C'd first run: it wrote an interrupted summary with answers, nothing was
    sent after the signal, and a rerun re-sends none of what was answered and completes the
    rest. Returns a line of figures for the log."""
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["state"] == "interrupted" and summary["scoring"]["completed"] > 0
    # A request the sweep sent just before the signal may reach the server a few hundred
    # microseconds after t_signal (seen: 0.3 ms): those were in flight, not sent after it.
    after = [e for e in server.stats()["events"] if e["t"] > t_signal + IN_FLIGHT_MARGIN]
    first = ok_fingerprints(server)
    resent = resent_on_rerun(server, cache, tmp_path, first)
    assert len(after) == 0
    assert len(resent) == 0
    assert sum(first.values()) + sum(ok_fingerprints(server).values()) == ITEMS
    return (f"{label}: requests arriving after the signal: {len(after)}; answered in run 1: "
            f"{sum(first.values())}; re-sent on rerun: {len(resent)}")


def test_ctrl_c_stops_sending_saves_every_answer_and_a_rerun_resends_none(
        tmp_path: Path, make_fake_server: Callable[..., FakeOpenAIServer]) -> None:
    server = make_fake_server(latency=0.4, jitter=0.2, seed=1)
    cache = tmp_path / "cache"
    proc = start(sweep_cmd(server.url, cache, tmp_path / "out", "--no-ray", "--concurrency",
                           "8"), tmp_path, "first")
    answered_before(server, 30, proc)
    t_signal = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rc = wait(proc, 60)
    seconds = time.monotonic() - t_signal
    assert rc == 130, log_of(tmp_path, "first")[-2000:]
    print("\n" + check_interrupted_run(server, cache, tmp_path, t_signal,
                                       f"SIGINT: exit 130 after {seconds:.2f} s"))


def test_kill_9_loses_at_most_the_last_flush_interval_of_answers(
        tmp_path: Path, make_fake_server: Callable[..., FakeOpenAIServer]) -> None:
    server = make_fake_server(latency=0.2, seed=2)
    cache = tmp_path / "cache"
    proc = start(sweep_cmd(server.url, cache, tmp_path / "out", "--no-ray", "--concurrency",
                           "4"), tmp_path, "first")
    answered_before(server, 60, proc)
    t_kill = time.monotonic()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    events = server.stats()["events"]
    first = ok_fingerprints(server)
    # Answers that may still have been in memory: those that went out in the last flush
    # interval (2 s) plus one interval of slack, and the requests in flight.
    recent = {e["fingerprint"] for e in events if e["t"] > t_kill - 3.0 - 0.6}
    resent = resent_on_rerun(server, cache, tmp_path, first)
    print(f"\nkill -9: answered before the kill {sum(first.values())}, re-sent on rerun "
          f"{len(resent)} (answers of the last ~2 s flush interval)")
    assert resent <= recent
    assert len(resent) < sum(first.values())


def test_two_concurrent_sweeps_on_one_cache_buy_each_item_once(
        tmp_path: Path, make_fake_server: Callable[..., FakeOpenAIServer]) -> None:
    server = make_fake_server(latency=0.1, jitter=0.1, fault_5xx=0.1, fault_reset=0.05,
                              fault_control_chars=0.2, seed=4)
    cache = tmp_path / "cache"
    a = start(sweep_cmd(server.url, cache, tmp_path / "a", "--no-ray", "--concurrency", "4"),
              tmp_path, "a")
    b = start(sweep_cmd(server.url, cache, tmp_path / "b", "--no-ray", "--concurrency", "4"),
              tmp_path, "b")
    assert wait(a) == 0, log_of(tmp_path, "a")[-2000:]
    assert wait(b) == 0, log_of(tmp_path, "b")[-2000:]
    ok = ok_fingerprints(server)
    twice = sum(1 for n in ok.values() if n > 1)
    counts = [json.loads((tmp_path / n / "summary.json").read_text())["manifest"]["counts"]
              for n in ("a", "b")]
    print(f"\ntwo concurrent sweeps: {len(ok)} items bought, {twice} bought twice; "
          f"sent by a/b: {counts[0]['completed']}/{counts[1]['completed']}, "
          f"reported bought_twice {counts[0]['bought_twice']}/{counts[1]['bought_twice']}")
    assert len(ok) == ITEMS
    assert twice == 0
    assert counts[0]["completed"] + counts[1]["completed"] == ITEMS
    assert counts[0]["bought_twice"] == counts[1]["bought_twice"] == 0
    assert not list((cache / ".claims").glob("*.claim"))  # every claim released


def _listening(pids: set[int]) -> list[tuple[int, str, str, int]]:
    import psutil

    out = []
    for c in psutil.net_connections("inet"):
        if c.status == psutil.CONN_LISTEN and c.pid in pids:
            try:
                name = psutil.Process(c.pid).name()
            except psutil.Error:
                name = "?"
            out.append((c.pid, name, c.laddr.ip, c.laddr.port))
    return out


def test_a_local_ray_sweep_listens_on_loopback_only(
        tmp_path: Path, make_fake_server: Callable[..., FakeOpenAIServer]) -> None:
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("ray")
    import ipaddress

    server = make_fake_server(latency=0.5, seed=5)
    proc = start(sweep_cmd(server.url, tmp_path / "cache", tmp_path / "out"), tmp_path, "ray")
    seen: dict[tuple[int, int], tuple[int, str, str, int]] = {}
    try:
        while proc.poll() is None:
            try:
                family = {proc.pid} | {c.pid for c in
                                       psutil.Process(proc.pid).children(recursive=True)}
            except psutil.NoSuchProcess:
                break
            for entry in _listening(family):
                seen[(entry[0], entry[3])] = entry
            if len(ok_fingerprints(server)) >= ITEMS:
                break
            time.sleep(0.3)
        assert wait(proc) == 0, log_of(tmp_path, "ray")[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(env_of(tmp_path)["RAY_TMPDIR"], ignore_errors=True)
    names = {e[1] for e in seen.values()}
    print("\nlistening sockets of the local Ray sweep:")
    for pid, name, ip, port in sorted(seen.values(), key=lambda e: (e[1], e[3])):
        print(f"  {name:<24} pid {pid:<7} {ip}:{port}")
    assert any("raylet" in n for n in names) and any("gcs_server" in n for n in names), names
    open_ones = [e for e in seen.values()
                 if not ipaddress.ip_address(e[2].removeprefix("::ffff:")).is_loopback]
    assert open_ones == []


def test_ray_auth_disabled_with_a_network_address_is_refused(tmp_path: Path) -> None:
    env = {**env_of(tmp_path), "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": "192.0.2.10:6379"}
    proc = subprocess.run(
        sweep_cmd("http://127.0.0.1:9/v1", tmp_path / "cache", tmp_path / "out"),
        env=env, capture_output=True, text=True, timeout=120)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "RAY_AUTH_MODE=disabled" in last and "192.0.2.10" in last



def _ray_processes(ray_tmp: str) -> set[int]:
    """Live processes of the Ray session under ``ray_tmp`` (raylet, GCS, workers, agents: each
    names its session folder on its command line)."""
    import psutil

    # The folder itself, not a longer name it begins (another run's plr-123 in plr-1234).
    folder = re.compile(rf"{re.escape(ray_tmp)}(?![\w.-])")
    found = set()
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if (p.info["status"] != psutil.STATUS_ZOMBIE
                    and any(folder.search(arg) for arg in p.info["cmdline"] or ())):
                found.add(p.info["pid"])
        except psutil.Error:
            continue
    return found


def _names(pids: set[int]) -> list[str]:
    import psutil

    names = []
    for pid in sorted(pids):
        with contextlib.suppress(psutil.Error):
            names.append(" ".join(psutil.Process(pid).cmdline())[:160])
    return names


def _alive(pids: set[int]) -> set[int]:
    import psutil

    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


def _reap(pids: set[int], ray_tmp: str, timeout: float = 30) -> tuple[set[int], list[str]]:
    """The processes of ``pids`` (and of the Ray session) still alive after up to ``timeout``
    seconds (those that die with their parent need a moment to notice), with their command
    lines; killed, so that none is left to the next test whatever the verdict."""
    import psutil

    deadline = time.monotonic() + timeout
    while (left := _alive(pids) | _ray_processes(ray_tmp)) and time.monotonic() < deadline:
        time.sleep(0.2)
    names = _names(left)
    for pid in left:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
    return left, names


def test_ctrl_c_on_a_ray_actor_sweep_saves_every_answer_and_leaves_no_ray_behind(
        tmp_path: Path, make_fake_server: Callable[..., FakeOpenAIServer]) -> None:
    """A terminal's Ctrl-C to the sweep's process group: the answers in flight on the actors
    still arrive and are written, and the driver shuts down the Ray it started."""
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("ray")
    # Some 5xx: at the signal some answers are in flight and some await a retry on the actors.
    server = make_fake_server(latency=0.4, jitter=0.2, fault_5xx=0.3, seed=6)
    cache = tmp_path / "cache"
    ray_tmp = env_of(tmp_path)["RAY_TMPDIR"]
    proc = start(sweep_cmd(server.url, cache, tmp_path / "out", "--actors", "2",
                           "--concurrency", "8"), tmp_path, "first")
    try:
        answered_before(server, 30, proc, timeout=180)
        family = {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        family |= _ray_processes(ray_tmp)
        t_signal = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole foreground group
        rc = wait(proc, 90)
        seconds = time.monotonic() - t_signal
        left, names = _reap(family, ray_tmp)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert rc == 130, log_of(tmp_path, "first")[-3000:]
    figures = check_interrupted_run(server, cache, tmp_path, t_signal,
                                    f"SIGINT to the group of a Ray sweep: exit {rc} after "
                                    f"{seconds:.2f} s")
    shutil.rmtree(ray_tmp, ignore_errors=True)
    print(f"\n{figures}; Ray processes left: {len(left)} of {len(family)}")
    assert left == set(), names




def test_a_second_ctrl_c_on_a_ray_actor_sweep_quits_at_once_and_leaves_no_ray_behind(
        tmp_path: Path, make_fake_server: Callable[..., FakeOpenAIServer]) -> None:
    """The second Ctrl-C skips the grace period and the orderly shutdown, yet the raylet, GCS
    and actor workers of the runtime the driver started go with it."""
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("ray")
    server = make_fake_server(latency=2.0, seed=7)  # answers outlast the grace period
    ray_tmp = env_of(tmp_path)["RAY_TMPDIR"]
    proc = start(sweep_cmd(server.url, tmp_path / "cache", tmp_path / "out", "--actors", "2",
                           "--concurrency", "8", "--grace-seconds", "60"), tmp_path, "first")
    left: set[int] = set()
    try:
        answered_before(server, 8, proc, timeout=180)
        family = {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        family |= _ray_processes(ray_tmp)
        os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while "sending stopped" not in log_of(tmp_path, "first"):
            assert proc.poll() is None and time.monotonic() < deadline, log_of(tmp_path, "first")
            time.sleep(0.05)
        t_second = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        rc = wait(proc, 30)  # well inside the 60 s of grace it skipped
        seconds = time.monotonic() - t_second
        left, names = _reap(family, ray_tmp)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    print(f"\nsecond SIGINT to the group of a Ray sweep: exit {rc} after {seconds:.2f} s; Ray "
          f"processes left: {len(left)} of {len(family)}")
    assert rc == 130, log_of(tmp_path, "first")[-3000:]
    assert "interrupted again: exiting now" in log_of(tmp_path, "first")
    assert left == set(), names


def test_kill_9_to_the_group_of_a_ray_actor_sweep_leaves_no_ray_behind(
        tmp_path: Path, make_fake_server: Callable[..., FakeOpenAIServer]) -> None:
    """A sweep killed outright with its process group leaves no Ray process: the runtime's
    own groups are out of that kill's reach, but the kernel ends its GCS and raylet with the
    driver (parent-death signal) and the watchdog the driver started ends the agents and
    workers the raylet spawned. (``tests/jobs/test_signals.py`` kills the driver alone.)"""
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("ray")
    server = make_fake_server(latency=0.4, seed=8)
    ray_tmp = env_of(tmp_path)["RAY_TMPDIR"]
    proc = start(sweep_cmd(server.url, tmp_path / "cache", tmp_path / "out", "--actors", "2",
                           "--concurrency", "8"), tmp_path, "first")
    left: set[int] = set()
    try:
        answered_before(server, 8, proc, timeout=180)
        family = {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        family |= _ray_processes(ray_tmp)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        left, names = _reap(family, ray_tmp)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    print(f"\nkill -9 to the group of a Ray sweep: Ray processes left: {len(left)} of "
          f"{len(family)}")
    assert left == set(), names
