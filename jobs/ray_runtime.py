"""The Ray runtime around a job: connect to a cluster (refusing an unauthenticated one beyond
loopback) or start a local one that listens on 127.0.0.1 only, place actors on the node type
that advertises their resource, and take down on the way out what this process started.

Ray is imported on first use: commands that never reach a cluster never load it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from pluralign.engine.errors import InputError
from pluralign.engine.run.hosts import is_loopback


def _ray() -> ModuleType:
    import ray  # heavy and optional (the distributed extra): loaded only when a job needs it

    return ray


def placement(resource: str) -> dict[str, Any]:
    """Pin actors to the node type that advertises ``resource`` (see ray_cluster.yaml), when
    the cluster has one; a plain local cluster has none and places them anywhere."""
    ray = _ray()
    if ray.cluster_resources().get(resource, 0) > 0:  # type: ignore[no-untyped-call]
        return {"resources": {resource: 1}}
    return {}


def ensure_ray(dashboard: bool = False) -> bool:
    """Connect to (or start, with its dashboard when asked) Ray; True when the cluster cannot
    grow (no RAY_ADDRESS: a local one), so missing resources are an error at once rather than a
    wait for an autoscaler."""
    ray = _ray()
    address = os.environ.get("RAY_ADDRESS") or None
    if not ray.is_initialized():
        # Inside `ray job submit` RAY_ADDRESS names the cluster; otherwise start a local one.
        if address is None:
            init_local_ray(dashboard=dashboard)
        else:
            refuse_open_cluster(address)
            ray.init(address=address, log_to_driver=False)
    return address is None


def address_host(address: str) -> str:
    """The host of a Ray address (``ray://h:10001``, ``http://h:8265``, ``h:6379``)."""
    text = address if "://" in address else f"ray://{address}"
    return urlsplit(text).hostname or ""


def refuse_open_cluster(address: str) -> None:
    """With RAY_AUTH_MODE=disabled only a loopback address is acceptable: anyone who can reach
    an unauthenticated Ray cluster runs code on it (and reads the API key of its actors)."""
    if address in ("auto", "local"):
        return  # resolved by Ray to a runtime on this host; checked after connecting
    auth = os.environ.get("RAY_AUTH_MODE", "").strip().lower()
    host = address_host(address)
    if auth == "disabled" and not (host == "" or is_loopback(host)):
        raise InputError(f"RAY_AUTH_MODE=disabled with the non-loopback Ray address {address}: "
                         "anyone on that network could run code on the cluster",
                         field="RAY_ADDRESS",
                         hint="export RAY_AUTH_MODE=token on every node and client, or use a "
                              "head bound to 127.0.0.1")


def init_local_ray(*, dashboard: bool = False, **options: Any) -> None:
    """Start a single-node Ray runtime that listens on 127.0.0.1 only (GCS, raylet, object
    manager, workers; the dashboard only when asked, also on 127.0.0.1).

    Ray binds its servers to the node IP; it turns a loopback ``_node_ip_address`` into the
    host's LAN address unless multi-node clusters are off for this process, which a runtime we
    start for ourselves never needs. The switch is set only while the runtime starts (its
    processes inherit it) and restored afterwards.
    """
    ray = _ray()
    from ray._private import ray_constants

    env, flag = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, ray_constants.ENABLE_RAY_CLUSTER
    saved = os.environ.get(env)
    os.environ[env] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with _own_process_groups():
            ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=dashboard,
                     dashboard_host="127.0.0.1", log_to_driver=False, **options)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = flag
        if saved is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = saved
    _watch_started_ray()


@contextlib.contextmanager
def _own_process_groups() -> Iterator[None]:
    """Start each process of a local Ray runtime (GCS, raylet, dashboard, ...) in a process
    group of its own, as Ray does on Windows, so that a signal to the driver's group (a
    process manager's SIGTERM, a terminal's Ctrl-C) reaches the driver alone: its handler then
    stops sending and collects what the actors hold before it shuts the runtime down, instead
    of the raylet dying under them with answers already paid for. The raylet's children (actor
    workers, agents) inherit its group.

    Only where the kernel ties each child to the driver (Linux's parent-death signal, which Ray
    sets): a ``kill -9`` of the driver still ends the GCS and the raylet, and
    :func:`_watch_started_ray` ends what they spawned. Elsewhere Ray's own reaper needs them in
    the driver's group, and nothing changes."""
    try:
        from ray._private import services, utils

        module: Any = services
        fate_shared = utils.detect_fate_sharing_support()  # type: ignore[no-untyped-call]
        supported = sys.platform.startswith("linux") and bool(fate_shared)
        base = module.ConsolePopen
    except (ImportError, AttributeError):  # where Ray's internals moved: Ray's own behaviour
        supported = False
    if not supported:
        yield
        return

    class _GroupPopen(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("process_group", 0)
            super().__init__(*args, **kwargs)

    module.ConsolePopen = _GroupPopen
    try:
        yield
    finally:
        module.ConsolePopen = base


_WATCHDOGS: list[tuple[subprocess.Popen[bytes], int]] = []
"""The watchdogs this process started, each with the write end of its pipe."""


def _watch_started_ray() -> None:
    """Start a watchdog (:mod:`pluralign.jobs.ray_watchdog`) over the process groups of the
    Ray runtime this process just started: when this process ends in any way, ``kill -9``
    included, it kills what is left in them (the agents and workers the raylet spawned, which
    outlive a raylet that did not shut down in order). It leaves by itself once the groups are
    empty (an orderly shutdown)."""
    for watchdog, write in list(_WATCHDOGS):  # those of runtimes already shut down
        if watchdog.poll() is not None:
            os.close(write)
            _WATCHDOGS.remove((watchdog, write))
    groups = sorted({p.pid for p in _started_processes() if _pgid(p.pid) == p.pid})
    if not groups:
        return  # in the driver's group (Ray's own behaviour): nothing of ours to watch
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ray_watchdog.py")
    read, write = os.pipe()
    try:
        # -I: no site packages, no script folder on the path; it needs the standard library only
        watchdog = subprocess.Popen([sys.executable, "-I", script, *map(str, groups)],
                                    stdin=read, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, process_group=0)
    except OSError:
        os.close(write)
        return
    finally:
        os.close(read)
    # The write end stays open, and out of every child this process execs, until this process
    # ends: the watchdog's end then reads end-of-file.
    _WATCHDOGS.append((watchdog, write))


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _started_processes() -> list[Any]:
    """The processes (``subprocess.Popen``) of the Ray runtime this process started: raylet,
    GCS and the rest; none for a cluster it only connected to, or where Ray's internals
    moved."""
    try:
        from ray._private import worker

        node: Any = worker._global_node
        groups: list[Any] = list(node.all_processes.values()) if node else []
        return [info.process for infos in groups for info in infos]
    except Exception:
        return []


def started_ray_intact() -> bool:
    """False when a process of the Ray runtime this process started has died (a signal sent
    to the raylet or GCS too, by a process manager that signals every process it knows of): an orderly shutdown then only
    waits on the dead."""
    return all(p.poll() is None for p in _started_processes())


def stop_started_ray(grace: float = 3.0) -> None:
    """Shut down the Ray runtime this process started, within ``grace`` seconds, for an exit
    that skips the ``ray.shutdown`` Ray runs at exit: the second Ctrl-C.

    Ray's own children die with the driver, but the agents the raylet spawned outlive a raylet
    that was killed rather than shut down, so the orderly ``ray.shutdown`` runs first (in a
    thread, so a stuck one cannot hold the exit); what still runs after ``grace`` is killed. A
    cluster the driver only connected to (RAY_ADDRESS) loses only this driver. No later Ray
    call of this process starts a runtime of its own (:func:`forbid_implicit_init`).
    """
    if "ray" not in sys.modules:
        return  # this run never started Ray
    ray = _ray()
    forbid_implicit_init()
    started = _started_processes()  # empty where Ray's internals moved: only ray.shutdown
    # The raylet's own children (the dashboard agent, the runtime-env agent, workers) are not in
    # that list and, once the raylet is gone, belong to init: note them now, while they can
    # still be found as its descendants.
    spawned = _descendants([p.pid for p in started])
    done = threading.Thread(target=ray.shutdown, daemon=True)
    done.start()
    done.join(grace)
    _kill(started, spawned)


BROKEN_SHUTDOWN_GRACE = 20.0
"""Seconds ``ray.shutdown`` gets to disconnect from a runtime that lost its GCS (it takes about
5: the driver's core worker waits on the dead before it lets go)."""


def abandon_broken_ray(grace: float = BROKEN_SHUTDOWN_GRACE, settle: float = 0.0) -> bool:
    """When the Ray runtime this process started has lost a process (a SIGTERM sent to
    every process of the run kills its raylet, GCS and actor workers with the driver's handler
    still running), take down what is left of it and disconnect, before anything waits on the dead:
    Ray gives up on an unreachable GCS only after a minute, then aborts the driver (exit 1).

    True when it did: the caller then makes no Ray call of its own (each would raise, and none
    starts a fresh runtime: :func:`forbid_implicit_init`). False, touching nothing, for an
    intact runtime, one this process only connected to, or none. ``settle``: seconds to watch
    an intact runtime for a process dying (a signal that reached it too may still be on its
    way through it).
    """
    if "ray" not in sys.modules or not _started_processes():
        return False  # no runtime of its own: nothing to watch, nothing to take down
    deadline = time.monotonic() + settle
    while started_ray_intact():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    ray = _ray()
    forbid_implicit_init()
    started = _started_processes()
    # The survivors first (agents, workers): the disconnect then has nothing left to wait for
    # but the core worker's own farewell to the dead GCS.
    _kill(started, _descendants([p.pid for p in started]))
    done = threading.Thread(target=ray.shutdown, daemon=True)
    done.start()
    done.join(grace)
    return True


def forbid_implicit_init() -> None:
    """From now on a Ray call of this process (``ray.get``, ``.remote``, placement groups)
    raises where no runtime is connected, instead of calling ``ray.init`` on its own — which
    would start a fresh local runtime on the way out of a run whose runtime is gone. The same
    switch as ``RAY_ENABLE_AUTO_CONNECT=0``, which Ray reads only when it is imported; an
    explicit ``ray.init`` still works."""
    if "ray" not in sys.modules:
        return
    with contextlib.suppress(ImportError, AttributeError):  # where Ray's internals moved
        from ray._private import auto_init_hook

        auto_init_hook.enable_auto_connect = False


def _kill(started: list[Any], spawned: list[Any]) -> None:
    """Kill what still runs of ``started`` (``subprocess.Popen``) and ``spawned`` (psutil)."""
    for process in started:
        if process.poll() is None:
            process.kill()
    for child in spawned:
        with contextlib.suppress(Exception):  # gone already, or no longer ours
            if child.is_running():
                child.kill()


def _descendants(pids: list[int]) -> list[Any]:
    """Every live descendant of ``pids`` (psutil processes), or none where psutil is absent."""
    try:
        import psutil
    except ImportError:
        return []
    out: list[Any] = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            out.extend(psutil.Process(pid).children(recursive=True))
    return out
