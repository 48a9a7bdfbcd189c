"""A vLLM replica on a worker host of the multi-host rig (tests/cluster/rig.py): a sweep with
``--backend vllm`` submitted from the client host with ``ray job submit``, its driver on the
head, its one replica actor on the worker host that advertises ``vllm_replica`` (as a GPU node
of ray_cluster.yaml does), the tiny model in the folder every host sees.

Needs root (network namespaces), vLLM and this Python's ``ray``; skipped with one line where
the rig cannot be made. One rig for the module: head, two workers (worker1 advertises
``vllm_replica``, worker2 only ``api_client``) and the client; no provider host.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluralign.jobs.submit import parse_result
from tests.cluster.conftest import figures, job_logs, rig_or_skip, submit, wait_job
from tests.cluster.rig import Cluster, vllm_sweep_command
from tests.real_engine.conftest import ENGINE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

REPLICA_HOST = "worker1"
ITEMS = 4 * 2
"""The sweep's benchmark (rig.VLLM_BENCHMARK): one comparative-regression request per
(scenario, attribute)."""


@pytest.fixture(scope="module")
def vllm_rig() -> Iterator[Cluster]:
    env = {"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with rig_or_skip(hosts=("head", "worker1", "worker2", "client"),
                     resources={REPLICA_HOST: {"vllm_replica": 1}}, extra_env=env) as c:
        yield c


def test_a_sweep_from_the_client_scores_on_a_replica_on_the_worker_host(
        vllm_rig: Cluster, tiny_model: Path) -> None:
    rig = vllm_rig
    model = rig.shared / "tiny-model"  # where every host finds it, like a shared filesystem
    shutil.copytree(tiny_model, model)
    folder = rig.shared / "vllm-sweep"
    submit(rig, "vllm", vllm_sweep_command(str(model), str(folder / "cache"),
                                           str(folder / "out"), ENGINE))
    assert wait_job(rig, "vllm", timeout=1200) == "SUCCEEDED", job_logs(rig, "vllm")[-6000:]

    # The results come back to the submitter: the summary through the job's log (--fetch).
    fetched = rig.run("client", [sys.executable, "-m", "pluralign.jobs.submit", "--address",
                                 rig.dashboard_url, "--fetch", "vllm", "--to",
                                 str(folder / "fetched")], timeout=120)
    summary: dict[str, Any] = json.loads((folder / "fetched" / "summary.json").read_text())
    assert summary == json.loads((folder / "out" / "summary.json").read_text()), fetched.stdout
    counts = summary["manifest"]["counts"]
    hosts = counts["placement"]
    worker = rig.hosts[REPLICA_HOST].address
    assert hosts["actors_by_host"] == {worker: 1}, hosts  # not the head, not worker2
    assert hosts["items_by_host"] == {worker: ITEMS}, hosts
    assert counts["completed"] == ITEMS and counts["failed"] == 0, counts
    assert counts["lost"] == 0 and hosts["hosts_lost"] == []
    result = parse_result(job_logs(rig, "vllm"))
    assert result is not None and result["host"] == rig.head.address  # the driver's host
    assert "summary.json" in result["files"], result["files"]
    figures("vllm replica on a worker", replica_host=worker, head=rig.head.address,
            other_worker=rig.hosts["worker2"].address, client=rig.hosts["client"].address,
            actors_by_host=hosts["actors_by_host"], items_by_host=hosts["items_by_host"],
            completed=counts["completed"], out_files=result["files"],
            fetched=fetched.stdout.strip())
