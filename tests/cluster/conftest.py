"""The multi-host rig (tests/cluster/rig.py) as a module fixture, and the job helpers the cluster
tests share. These tests run in their own stage (``python -m pytest -m cluster tests/cluster``):
the plain test command skips them with one line, as it does where namespaces are not allowed.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.rig import (
    REPO,
    Cluster,
    RigUnavailable,
    cluster,
    job_submit,
    sweep_command,
    unavailable,
)

RPM = 40
"""The provider's limit per window (one key), and its window in seconds: 4 requests/s."""
RPM_WINDOW = 10.0
PROVIDER_FLAGS = ("--rpm", str(RPM), "--rpm-window", str(RPM_WINDOW), "--latency", "0.3",
                  "--seed", "3")
CLIENT_RPM = int(RPM * 60 / RPM_WINDOW)
"""The same budget per minute, as the sweep's ``--rpm`` states it."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "cluster" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="cluster rig tests run in their own stage: "
                                   "python -m pytest -m cluster tests/cluster")
    for item in items:
        if item.get_closest_marker("cluster") is not None:
            item.add_marker(skip)


@contextlib.contextmanager
def rig_or_skip(**options: Any) -> Iterator[Cluster]:
    """The rig of ``cluster(**options)``, or a skip with one line saying why it cannot be made
    here (not root, a missing command, namespaces refused); torn down on the way out."""
    why = unavailable()
    if why is not None:
        pytest.skip(f"cluster rig: {why}")
    try:
        with cluster(**options) as c:
            yield c
    except RigUnavailable as e:
        pytest.skip(f"cluster rig: {e}")


@pytest.fixture(scope="module")
def rig() -> Iterator[Cluster]:
    """Head, two workers, a client and a provider host, token auth, Redis on the head; all torn
    down after the module, whatever happened."""
    with rig_or_skip(provider_flags=PROVIDER_FLAGS) as c:
        yield c


# ---------------------------------------------------------------- jobs, from the client host

_JOBCTL = """
import json, sys
from ray.job_submission import JobSubmissionClient
c = JobSubmissionClient(sys.argv[1]); what, sid = sys.argv[2], sys.argv[3]
if what == "info":
    i = c.get_job_info(sid)
    d = i.driver_info
    print(json.dumps({"status": str(i.status), "pid": d.pid if d else None,
                      "host": d.node_ip_address if d else None}))
else:
    sys.stdout.write(c.get_job_logs(sid))
"""


def submit(rig: Cluster, sid: str, command: Sequence[str]) -> None:
    rig.run("client", job_submit(rig.head.address, sid, command), timeout=120)


def job_info(rig: Cluster, sid: str) -> dict[str, Any]:
    out = rig.run("client", [sys.executable, "-c", _JOBCTL, rig.dashboard_url, "info", sid],
                  timeout=60)
    info: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return info


def job_logs(rig: Cluster, sid: str) -> str:
    return rig.run("client", [sys.executable, "-c", _JOBCTL, rig.dashboard_url, "logs", sid],
                   timeout=60).stdout


def wait_job(rig: Cluster, sid: str, timeout: float = 240) -> str:
    """The job's final status (SUCCEEDED, FAILED, STOPPED)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: str = job_info(rig, sid)["status"].rsplit(".", 1)[-1]
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return status
        time.sleep(1)
    raise TimeoutError(f"job {sid} still running after {timeout:g} s:\n{job_logs(rig, sid)}")


def wait_requests(rig: Cluster, n: int, timeout: float = 180) -> None:
    """Until the provider has seen ``n`` requests."""
    deadline = time.monotonic() + timeout
    while int(rig.provider_stats()["total"]) < n:  # type: ignore[call-overload]
        if time.monotonic() > deadline:
            raise TimeoutError(f"the provider saw fewer than {n} requests in {timeout:g} s")
        time.sleep(0.5)


def reset_provider(rig: Cluster) -> None:
    code = ("import urllib.request;urllib.request.urlopen(urllib.request.Request("
            f"'http://{rig.hosts['provider'].address}:8000/fake/reset', method='POST'),"
            "timeout=10)")
    rig.run("client", [sys.executable, "-c", code], timeout=60)


def sweep(rig: Cluster, folder: Path, **options: Any) -> list[str]:
    """The rig's sweep with its cache and --out under ``folder``."""
    options.setdefault("rpm", CLIENT_RPM)
    return sweep_command(rig.head.address, rig.provider_url, str(folder / "cache"),
                         str(folder / "out"), **options)


def placement_counts(summary: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, Any] = summary["manifest"]["counts"]
    return counts


def paid_twice(stats: dict[str, Any]) -> int:
    """Answers the provider gave (and a real one would bill) beyond one per request body."""
    return sum(n - 1 for n in stats["ok_by_fingerprint"].values() if n > 1)


def budget_use(stats: dict[str, Any], limit: int, window: float) -> tuple[int, int, float]:
    """(windows over the limit, most requests in any window, share of the limit used).

    A window starts at every request the provider saw and lasts ``window`` seconds; the share
    is the answered requests over what the limit allows from the first request to the last."""
    times = sorted(float(e["t"]) for e in stats["events"])
    ok = sum(1 for e in stats["events"] if int(e["status"]) == 200)
    most, over, j = 0, 0, 0
    for i, t in enumerate(times):
        while j < len(times) and times[j] < t + window:
            j += 1
        most = max(most, j - i)
        over += int(j - i > limit)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    allowed = limit * span / window + 1  # the first request opens the window
    return over, most, ok / allowed if allowed else 0.0


def figures(name: str, **values: object) -> None:
    """Print a test's measured figures (shown with -s; the report quotes them)."""
    print(f"\n[{name}] " + json.dumps(values, sort_keys=True), flush=True)


def repo_env() -> dict[str, str]:
    return {"PYTHONPATH": str(REPO)}


def host_of(text: str) -> str:
    found = re.search(r"\d+\.\d+\.\d+\.\d+", text)
    return found.group(0) if found else ""
