"""SIGINT and SIGTERM in every command that sends: the first stops sending, stores every answer
already paid for, releases its claims and exits 130.

Each command runs as a real ``pluralign`` subprocess sending real HTTP to one fake server on
127.0.0.1 (shared by the module, reset per test), which counts every request and every paid
answer. The checks: the command exits (a generous hang bound, never a speed), no request
reaches the server after the signal, the answers paid equal the answers stored, no claim file
is left. Figures are printed (``-s`` shows them).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pluralign.actors.testing.fake_server import FakeOpenAIServer
from pluralign.engine.store.cache import ScoreCache
from pluralign.engine.store.choices import ChoiceCache
from pluralign.engine.store.generations import GenerationCache
from tests.fake_openai import FAKE_KEY, FAKE_KEY_ENV, free_port

HANG = 90.0
"""Seconds after which a command that has not exited counts as hung (not a speed bound)."""
IN_FLIGHT_MARGIN = 0.15
"""Seconds after the signal within which an arriving request was already on its way: the
fake server's thread shares this process and stamps a request when it gets the CPU, tens of
milliseconds late on a busy machine; a request sent after the signal arrives a whole answer
latency (0.3 s and more) after an answer it waited for."""
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}
FULL = pytest.mark.signals
"""The rest of the matrix: its own CI stage (``python -m pytest -m signals
tests/jobs/test_signals.py``); the default run keeps one signal per command (~40 s)."""
DEFAULT_SIGNAL = {"sweep": "SIGINT", "sweep-reward": "SIGTERM", "spica-generate": "SIGTERM",
                  "opinions": "SIGINT", "overton": "SIGTERM"}


@pytest.fixture(autouse=True)
def _full_matrix_in_its_own_stage(request: pytest.FixtureRequest) -> None:
    if (request.node.get_closest_marker("signals") is not None
            and "signals" not in (request.config.getoption("markexpr") or "")):
        pytest.skip("the full signal matrix runs in its own stage: "
                    "python -m pytest -m signals tests/jobs/test_signals.py")


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    """One fake server for the module; each test resets its counts."""
    srv = FakeOpenAIServer(latency=0.3, jitter=0.2, seed=11).start_in_thread()
    yield srv
    srv.stop_thread()


def _llm(url: str, cache: Path) -> list[str]:
    return ["--backend", "openai", "--base-url", url, "--model", "fake", "--no-ray",
            "--api-key-env", FAKE_KEY_ENV, "--cache", str(cache), "--concurrency", "8"]


def _sweep(url: str, tmp: Path) -> list[str]:
    return ["sweep", "--benchmark", "synthetic:S=60,A=2,L=3", "--scorer",
            "comparative-regression", "--zero-shot", "--targets", "all", *_llm(url, tmp / "c"),
            "--out", str(tmp / "out")]


def _reward(url: str, tmp: Path) -> list[str]:
    return ["sweep", "--benchmark", "synthetic:S=60,A=2,L=3", "--scorer", "reward",
            "--reward-attributes", "a0=0,a1=1", "--reward-batch", "1", "--base-url", url,
            "--model", "fake", "--api-key-env", FAKE_KEY_ENV, "--targets", "all",
            "--cache", str(tmp / "c"), "--out", str(tmp / "out")]


def _spica(url: str, tmp: Path) -> list[str]:
    prompts = tmp / "prompts.txt"
    prompts.write_text("".join(f"How should one answer question number {i}?\n"
                               for i in range(20)))
    return ["spica", "generate", "classes", "--prompts", str(prompts), "--base-url", url,
            "--model", "fake", "--api-key-env", FAKE_KEY_ENV, "--cache", str(tmp / "c"),
            "--out", str(tmp / "bank.parquet")]


def _opinions(url: str, tmp: Path) -> list[str]:
    survey = tmp / "survey.json"
    survey.write_text(json.dumps({"questions": [
        {"id": f"s{i}", "question": f"Is thing {i} good?", "options": ["Yes", "No", "Maybe"],
         "groups": {"US": {"probabilities": [0.5, 0.25, 0.25]}}} for i in range(20)]}))
    return ["opinions", "--file", str(survey), "--samples", "6", *_llm(url, tmp / "c"),
            "--out", str(tmp / "out")]


def _overton(url: str, tmp: Path) -> list[str]:
    queries = tmp / "overton.json"
    queries.write_text(json.dumps({"queries": [{
        "id": f"q{i}", "query": f"Should city {i} ban cars downtown?",
        "window": ["Banning cars reduces air pollution", "Shops may lose customers",
                   "Streets get safer", "Deliveries get harder"],
        "unreasonable": ["Cars should be banned everywhere forever"],
        "responses": {"a": "It reduces pollution but shops may lose customers.", "b": "Yes.",
                      "c": "Streets get safer."}} for i in range(8)]}))
    return ["overton", "--file", str(queries), "--judge", "llm", *_llm(url, tmp / "c"),
            "--out", str(tmp / "out")]


def _stored_scores(cache: Path) -> int:
    """Comparative answers stored: one answer scores every response of a (scenario,
    attribute, sample), a row each."""
    parts = [pq.read_table(p) for p in ScoreCache(cache).parts()]
    if not parts:
        return 0
    rows = pa.concat_tables(parts)
    ok = rows.filter(pc.is_null(rows["error"])).select(["scenario", "attribute", "sample"])
    return len(set(zip(*(ok[c].to_pylist() for c in ok.column_names), strict=True)))


def _stored_rewards(cache: Path) -> int:
    """Reward answers stored: one text (a scenario's response) a request, a row per head."""
    parts = [pq.read_table(p) for p in ScoreCache(cache).parts()]
    if not parts:
        return 0
    rows = pa.concat_tables(parts)
    ok = rows.filter(pc.is_null(rows["error"])).select(["scenario", "response"])
    return len(set(zip(*(ok[c].to_pylist() for c in ok.column_names), strict=True)))


def _stored_choices(cache: Path) -> int:
    return len(ChoiceCache(cache).completed_keys())


def _stored_generations(cache: Path) -> int:
    return len(GenerationCache(cache).completed_keys())


COMMANDS: dict[str, tuple[Callable[[str, Path], list[str]], Callable[[Path], int]]] = {
    "sweep": (_sweep, _stored_scores),
    "sweep-reward": (_reward, _stored_rewards),
    "spica-generate": (_spica, _stored_generations),
    "opinions": (_opinions, _stored_choices),
    "overton": (_overton, _stored_choices),
}
"""Each sending command: its argv (server URL, test folder) and how many answers it stored."""


def _env() -> dict[str, str]:
    env = {**os.environ, FAKE_KEY_ENV: FAKE_KEY, "PLURALIGN_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    return env


def _paid(server: FakeOpenAIServer) -> int:
    return sum(server.stats()["ok_by_fingerprint"].values())


def _wait_for_answers(server: FakeOpenAIServer, n: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + HANG
    while _paid(server) < n:
        assert proc.poll() is None, f"the command ended before {n} answers (rc {proc.poll()})"
        assert time.monotonic() < deadline, f"fewer than {n} answers in {HANG:g} s"
        time.sleep(0.02)


@pytest.mark.parametrize(("command", "sig"), [
    pytest.param(c, s, marks=[] if DEFAULT_SIGNAL[c] == s else [FULL])
    for c in COMMANDS for s in SIGNALS])
def test_the_first_signal_stops_sending_and_stores_every_paid_answer(
        command: str, sig: str, server: FakeOpenAIServer, tmp_path: Path) -> None:
    argv, stored_in = COMMANDS[command]
    server.reset()
    log = tmp_path / "log.txt"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pluralign", *argv(server.url, tmp_path)],
                                env=_env(), stdout=out, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    try:
        _wait_for_answers(server, 6, proc)
        t_signal = time.monotonic()
        proc.send_signal(SIGNALS[sig])
        rc = proc.wait(timeout=HANG)
        seconds = time.monotonic() - t_signal
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stats = server.stats()
    after = [e for e in stats["events"] if float(str(e["t"])) > t_signal + IN_FLIGHT_MARGIN]
    paid, stored = _paid(server), stored_in(tmp_path / "c")
    claims = list((tmp_path / "c").rglob("*.claim"))
    print(f"\n{command} {sig}: exit {rc} after {seconds:.2f} s; requests after the signal: "
          f"{len(after)}; paid {paid}, stored {stored}; claims left {len(claims)}")
    text = log.read_text()
    assert rc == 130, text[-2000:]
    assert "Traceback" not in text, text[-3000:]
    assert after == []
    assert paid == stored > 0
    assert claims == []


def _wait_for_rss(proc: subprocess.Popen[str], size: int) -> None:
    import psutil

    deadline = time.monotonic() + HANG
    while psutil.Process(proc.pid).memory_info().rss < size:
        assert proc.poll() is None, f"the command ended first (rc {proc.poll()})"
        assert time.monotonic() < deadline, f"under {size >> 20} MB after {HANG:g} s"
        time.sleep(0.02)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a script's background job starts


@pytest.mark.parametrize("sig", [pytest.param("SIGINT", marks=FULL), "SIGTERM"])
def test_a_signal_while_a_big_sweep_prepares_its_items_ends_it(
        sig: str, server: FakeOpenAIServer, tmp_path: Path) -> None:
    """A sweep of 1,000 samples (120,000 items) spends its first seconds building work items:
    a signal then ends it (exit 130, nothing sent after it), even for a process that started
    with SIGINT ignored (a script's background job, which used to ignore Ctrl-C until it
    sent)."""
    server.reset()
    log = tmp_path / "log.txt"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pluralign", *_sweep(server.url, tmp_path),
                                 "--samples", "1000"], env=_env(), stdout=out,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                preexec_fn=_ignore_sigint)
    try:
        _wait_for_rss(proc, 220 << 20)  # past its imports (~160 MB): building items
        t_signal = time.monotonic()
        proc.send_signal(SIGNALS[sig])
        rc = proc.wait(timeout=HANG)
        seconds = time.monotonic() - t_signal
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    events = server.stats()["events"]
    after = [e for e in events if float(str(e["t"])) > t_signal + IN_FLIGHT_MARGIN]
    print(f"\nsweep --samples 1000 {sig} while preparing: exit {rc} after {seconds:.2f} s; "
          f"requests before the signal {len(events) - len(after)}, after {len(after)}")
    assert rc == 130, log.read_text()[-2000:]
    assert "Traceback" not in log.read_text()
    assert after == []


def test_inside_a_command_sigterm_outside_a_run_is_a_ctrl_c() -> None:
    """Preparing or writing (no run's handlers installed), SIGTERM and SIGINT raise
    KeyboardInterrupt — SIGINT too where it was ignored — and the handlers are back after."""
    from pluralign.engine.run.signals import handled_by_command

    saved = {s: signal.getsignal(s) for s in SIGNALS.values()}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for sig in SIGNALS.values():
            with pytest.raises(KeyboardInterrupt), handled_by_command():
                os.kill(os.getpid(), sig)
                time.sleep(1.0)  # the handler runs between bytecodes, long before this ends
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is saved[signal.SIGTERM]
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def _left_behind(family: set[int], ray_tmp: str, driver: int, timeout: float = 30) -> set[int]:
    """The processes of ``family`` and of the Ray session under ``ray_tmp`` but ``driver``
    still running after up to ``timeout`` seconds (children need a moment to notice their
    parent's end)."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        left = set()
        for pid in (family | _ray_processes(ray_tmp)) - {driver}:
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    left.add(pid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def _ray_processes(ray_tmp: str) -> set[int]:
    """Live processes of the Ray session under ``ray_tmp`` (each names it on its command line)."""
    import psutil

    found = set()
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if (p.info["status"] != psutil.STATUS_ZOMBIE
                    and any(ray_tmp in arg for arg in p.info["cmdline"] or ())):
                found.add(p.info["pid"])
    return found


def _listening(pids: set[int]) -> list[str]:
    """The addresses the processes ``pids`` listen on (TCP)."""
    import psutil

    return sorted({c.laddr.ip for c in psutil.net_connections("inet")
                   if c.status == psutil.CONN_LISTEN and c.pid in pids})


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.mark.parametrize("sig", list(SIGNALS))
@pytest.mark.parametrize("mode", [
    pytest.param("local"), pytest.param("ray", marks=[pytest.mark.ray, FULL])])
def test_serve_stops_on_a_signal_and_leaves_nothing_behind(
        mode: str, sig: str, tmp_path: Path) -> None:
    """``serve`` and ``serve --ray`` stop on SIGINT or SIGTERM; ``--ray`` leaves no Ray
    process, and while it served every socket of it listened on loopback (its replica's gRPC
    server included)."""
    psutil = pytest.importorskip("psutil")
    if mode == "ray":
        pytest.importorskip("ray.serve")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ray_tmp = tempfile.mkdtemp(prefix="plrs")  # short: Ray's socket paths have a size limit
    env = {**_env(), "RAY_TMPDIR": ray_tmp}
    (tmp_path / "c").mkdir()
    argv = ["serve", "--cache", str(tmp_path / "c"), "--port", str(port),
            *(["--ray"] if mode == "ray" else [])]
    log = tmp_path / "log.txt"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pluralign", *argv], env=env, stdout=out,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    left: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        while not _healthy(url):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "serve never answered /healthz"
            time.sleep(0.2)
        family = {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        family |= _ray_processes(ray_tmp) | {proc.pid}
        listening = _listening(family)
        t_signal = time.monotonic()
        os.killpg(proc.pid, SIGNALS[sig])  # a terminal's Ctrl-C reaches the whole group
        rc = proc.wait(timeout=HANG)
        seconds = time.monotonic() - t_signal
        left = _left_behind(family, ray_tmp, proc.pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in left | _ray_processes(ray_tmp):  # never leave them to the next test
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    print(f"\nserve{' --ray' if mode == 'ray' else ''} {sig}: exit {rc} after {seconds:.2f} s;"
          f" processes left {len(left)}; listening on {', '.join(listening)}")
    text = log.read_text()
    assert rc in (0, 130), text[-2000:]
    assert "Traceback" not in text, text[-3000:]
    assert not _healthy(url)
    assert left == set()
    assert listening and all(_loopback(ip) for ip in listening), listening


RAY_SIGNALS = [
    pytest.param("SIGTERM", "group", id="SIGTERM-group"),
    pytest.param("SIGINT", "group", id="SIGINT-group"),
    pytest.param("SIGTERM", "driver", id="SIGTERM-driver"),
    pytest.param("SIGINT", "driver", id="SIGINT-driver"),
    pytest.param("SIGKILL", "driver", id="SIGKILL-driver"),
    pytest.param("SIGTERM", "all", id="SIGTERM-all"),
]
"""Where a signal reaches a Ray sweep: a process manager's SIGTERM or a terminal's Ctrl-C goes
to the whole group (the driver; the runtime it started has process groups of its own, so the
signal no longer kills its raylet under the actors); ``kill PID`` reaches the driver alone,
and ``kill -9 PID`` leaves the runtime's processes to the watchdog it started. systemd's
default stop (``KillMode=control-group``) sends SIGTERM to every process of the service at
once: the raylet dies under the actors."""


@pytest.mark.ray
@FULL
@pytest.mark.parametrize(("sig", "to"), RAY_SIGNALS)
def test_a_ray_actor_sweep_stops_on_a_signal_and_leaves_no_ray_behind(
        sig: str, to: str, server: FakeOpenAIServer, tmp_path: Path) -> None:
    """A sweep whose API clients are Ray actors: the first signal, to its group or to the
    driver alone, stops sending, stores every paid answer (a SIGTERM to the group used to kill
    the raylet, and with it the answers an actor worker held), exits 130, and leaves no process
    of the Ray runtime it started, nor starts another one on its way out. A ``kill -9`` of the
    driver stores nothing more, but leaves no Ray process behind either (the dashboard and
    runtime-env agents used to outlive it)."""
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("ray")
    server.reset()
    ray_tmp = tempfile.mkdtemp(prefix="plrs")  # short: Ray's socket paths have a size limit
    argv = [a for a in _sweep(server.url, tmp_path) if a != "--no-ray"] + ["--actors", "2"]
    log = tmp_path / "log.txt"
    left: set[int] = set()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pluralign", *argv],
                                env={**_env(), "RAY_TMPDIR": ray_tmp}, stdout=out,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for_answers(server, 6, proc)
        family = {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        family |= _ray_processes(ray_tmp)
        t_signal = time.monotonic()
        if to == "group":
            os.killpg(proc.pid, SIGNALS[sig])
        elif to == "all":
            for pid in {proc.pid} | family:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, SIGNALS[sig])
        else:
            proc.send_signal(getattr(signal, sig))
        rc = proc.wait(timeout=HANG)
        seconds = time.monotonic() - t_signal
        left = _left_behind(family, ray_tmp, proc.pid)
        sessions = [p.name for p in Path(ray_tmp, "ray").glob("session_2*")]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in left | _ray_processes(ray_tmp):  # never leave them to the next test
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    stats = server.stats()
    after = [e for e in stats["events"] if float(str(e["t"])) > t_signal + IN_FLIGHT_MARGIN]
    paid, stored = _paid(server), _stored_scores(tmp_path / "c")
    claims = list((tmp_path / "c").rglob("*.claim"))
    late = ", ".join(f"+{float(str(e['t'])) - t_signal:.2f} s" for e in after)
    whom = "every process" if to == "all" else f"the {to}"
    print(f"\nRay sweep, {sig} to {whom}: exit {rc} after {seconds:.2f} s; requests after "
          f"the signal: {len(after)}{f' ({late})' if late else ''}; paid {paid}, stored "
          f"{stored}; claims left {len(claims)}; "
          f"Ray processes left {len(left)} of {len(family)}; Ray sessions {len(sessions)}")
    text = log.read_text()
    # No actor worker dies under the driver (no batch is rerouted) and every paid answer is
    # stored, unless the signal reached the raylet too: an actor worker dies with it (the
    # driver reroutes its batch, and says so), and answers it had received but not yet
    # returned go with it: at most those requests are paid and not stored.
    died_with = sum(int(n) for n in re.findall(r"failed: \w+.*; rerouting (\d+) requests", text))
    print(f"requests on actors that died: {died_with}")
    assert left == set()
    assert "Traceback" not in text, text[-3000:]
    if sig == "SIGKILL":  # no handler runs: what was in flight is paid and lost, no more
        assert rc == -signal.SIGKILL
        assert stored <= paid
        assert len(sessions) == 1, sessions
        return
    assert rc == 130, text[-3000:]
    assert after == [], text[-3000:]
    assert 0 < stored <= paid and paid - stored <= died_with, text[-3000:]
    assert died_with == 0 or to == "all", text[-3000:]
    assert claims == []
    assert len(sessions) == 1, sessions  # no second runtime started on the way out
