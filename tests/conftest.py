"""Shared fixtures: where the published data lives (skip cleanly without it), the environment
every test runs in, and the one local Ray runtime the Ray tests share per module.

The suite needs no environment variable from its caller (``python -m pytest -q`` as the README
says): what Ray and the data loaders must see is set here and restored afterwards, and whatever
a test module leaves behind (a running Ray, a changed variable) is undone before the next one.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# CI runs the property tests derandomized: a red CI must be reproducible, not a coin toss.
# Locally they explore new examples on every run.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

_REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path | None:
    """The shared data folder: $PLURALIGN_DATA, else ../shared/data beside the checkout."""
    env = os.environ.get("PLURALIGN_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(_REPO.parent / "shared" / "data")
    for c in candidates:
        if (c / "helpsteer2" / "eval.json").exists():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = data_root()
    if root is None:
        pytest.skip("published data not found (set PLURALIGN_DATA)")
    return root


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The seed of a random order (pytest-randomly), even under -q, which hides the header: a
    failure that only some order shows is repeated with ``--randomly-seed=N``."""
    if config.pluginmanager.hasplugin("randomly"):
        seed = config.getoption("randomly_seed", None)
        if seed is not None:
            terminalreporter.write_line(f"random order: repeat it with -p randomly "
                                        f"--randomly-seed={seed}")


# ---------------------------------------------------------------- the environment of every test

TEST_ENVIRONMENT = {
    # Ray 2.60 turns token authentication on for every new local runtime whose RAY_AUTH_MODE is
    # unset: it writes a token to ~/.ray/auth_token and sets RAY_AUTH_MODE=token in this
    # process for good, and a runtime started later with another mode cannot be reached. The
    # test runtimes listen on loopback only (init_local_ray), so they say `disabled`, all of
    # them, in this process and in every subprocess (sweeps, `ray start`, `ray job submit`).
    "RAY_AUTH_MODE": "disabled",
    # No usage report from the test runtimes (it would go to the internet).
    "RAY_USAGE_STATS_ENABLED": "0",
    # Tests never download: a missing data set is an error (or a skip), never a fetch.
    "PLURALIGN_OFFLINE": "1",
}
"""Set for the whole session, whatever the caller's environment says, and restored after."""

UNSET_ENVIRONMENT = (
    # A caller's cluster or token must not reach the tests' runtimes.
    "RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH",
    # A caller's defaults must not reach the commands the tests run: their score cache (a test
    # that relies on the default gets its own, below), progress bars, serving token, download.
    "PLURALIGN_CACHE", "PLURALIGN_PROGRESS", "PLURALIGN_SERVE_TOKEN", "PLURALIGN_HELPSTEER2_URL",
)
"""Removed for the session (PLURALIGN_DATA stays: it is how the published data is found)."""

_PYTEST_OWN = ("PYTEST_CURRENT_TEST", "PYTEST_VERSION")


@pytest.fixture(scope="session", autouse=True)
def hermetic_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """TEST_ENVIRONMENT set and UNSET_ENVIRONMENT removed for the session; the user's data
    folder (a downloaded HelpSteer2) and matplotlib settings replaced by empty folders of the
    session's, so that no file of the caller's home changes an answer, and none is written."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    for name, value in TEST_ENVIRONMENT.items():
        mp.setenv(name, value)
    for name in UNSET_ENVIRONMENT:
        mp.delenv(name, raising=False)
    mp.setenv("XDG_DATA_HOME", str(home / "data"))
    mp.setenv("MPLCONFIGDIR", str(home / "matplotlib"))
    mp.setenv("PLURALIGN_CACHE", str(home / "default-cache"))  # module fixtures' default
    try:
        yield
    finally:
        mp.undo()


_caches = itertools.count()


@pytest.fixture(autouse=True)
def own_default_cache(tmp_path_factory: pytest.TempPathFactory,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's default score cache ($PLURALIGN_CACHE) is its own, empty: a test that names
    no cache reads nothing another test (or an earlier run) wrote. Created only when written."""
    base = tmp_path_factory.getbasetemp() / "default-caches"
    monkeypatch.setenv("PLURALIGN_CACHE", str(base / str(next(_caches))))


def _ray_running() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


@pytest.fixture(scope="module", autouse=True)
def isolated_module() -> Iterator[None]:
    """Nothing a test module leaves behind reaches the next one: a Ray runtime still running
    is shut down (with a warning: the module should have stopped it), and the environment is
    put back as it was when the module started (ray.init, for one, leaves RAY_CLIENT_MODE and
    PYTHONBREAKPOINT set after its shutdown)."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        if _ray_running():
            warnings.warn(pytest.PytestWarning("a Ray runtime was left running by this module; "
                                               "shut down before the next one"), stacklevel=1)
            sys.modules["ray"].shutdown()
        for name in set(os.environ) - set(saved) - set(_PYTEST_OWN):
            del os.environ[name]
        for name, value in saved.items():
            if name not in _PYTEST_OWN and os.environ.get(name) != value:
                os.environ[name] = value


# ---------------------------------------------------------------- a local Ray runtime

RAY_CPUS = 2
RAY_OBJECT_STORE = 100 * 1024**2
"""The object store of a test runtime: Ray's default (30% of RAM) is far more than any needs."""

RAY_WORKER_ENV = {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
"""One thread each for the runtime's workers: 2 CPUs do not host a thread pool per worker."""

_SOCKET_ROOM = 38
"""The longest temp folder for a Ray runtime: a Unix socket path holds at most 107 bytes, and
Ray adds up to 69 (``/ray`` under RAY_TMPDIR, ``/session_<date>_<time>_<us>_<pid>``,
``/sockets/plasma_store``)."""


def ray_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for a Ray runtime's session files: under this session's temporary folder, or,
    where that path is too long for Ray's sockets, a short one in /tmp (the caller removes it)."""
    temp = tmp_path_factory.mktemp("ray")
    if len(str(temp)) <= _SOCKET_ROOM:
        return temp
    temp.rmdir()
    return Path(tempfile.mkdtemp(prefix="plr", dir="/tmp"))


@pytest.fixture
def ray_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temp folder for a Ray runtime a test starts (``ray start --temp-dir``, RAY_TMPDIR),
    short enough for Ray's sockets; removed afterwards."""
    temp = ray_temp_dir(tmp_path_factory)
    try:
        yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The ``ray`` module, with a single-node runtime on 127.0.0.1 for this test module: 2 CPUs,
    a 100 MiB object store, single-threaded workers, its files under the session's temporary
    folder, and the planted API key in the environment its node starts with (actors read it from
    there, as on a real node, never from a runtime_env). Shut down, its files removed and the
    environment restored at the end of the module."""
    ray = pytest.importorskip("ray")
    from pluralign.jobs.ray_runtime import init_local_ray
    from tests.fake_openai import FAKE_KEY, FAKE_KEY_ENV

    if ray.is_initialized():  # left by someone else: this module needs its own
        ray.shutdown()
    temp = ray_temp_dir(tmp_path_factory)
    mp = pytest.MonkeyPatch()
    mp.setenv(FAKE_KEY_ENV, FAKE_KEY)
    try:
        init_local_ray(num_cpus=RAY_CPUS, object_store_memory=RAY_OBJECT_STORE,
                       _temp_dir=str(temp), runtime_env={"env_vars": dict(RAY_WORKER_ENV)})
        yield ray
    finally:
        ray.shutdown()
        mp.undo()
        shutil.rmtree(temp, ignore_errors=True)
