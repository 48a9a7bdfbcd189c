"""End to end through the multi-host rig: LLM sweeps submitted with ``ray job submit`` from the
client host, API-client actors on the worker hosts, one rate budget in Redis on the head, the
fake provider on a host of its own; then a worker host and the driver are lost mid-run.

The shared folder every host is told about plays the cluster's shared filesystem (NFS, EFS);
a folder under the head's own temp area plays a disk only the head sees.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pluralign.engine.run.scheduler import SchedulerConfig
from tests.cluster.conftest import (
    PROVIDER_FLAGS,
    RPM,
    RPM_WINDOW,
    budget_use,
    figures,
    job_info,
    job_logs,
    paid_twice,
    placement_counts,
    reset_provider,
    submit,
    sweep,
    wait_job,
    wait_requests,
)
from tests.cluster.rig import REPO, SYNTHETIC, WORKERS, Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

FLUSH_SECONDS = SchedulerConfig.flush_seconds
"""The scheduler writes answers at least this often."""
ITEMS = 16 * 5
"""The rig's sweep: 16 scenarios x 5 attributes, one comparative-regression request each."""


def _run_folder(rig: Cluster, name: str) -> Path:
    folder = rig.shared / name
    folder.mkdir(parents=True)
    return folder


def test_a_job_from_the_client_spreads_over_the_workers_within_one_budget(rig: Cluster) -> None:
    reset_provider(rig)
    folder = _run_folder(rig, "spread")
    # --out on a disk only the head sees: the submitter gets the summary from the job's log.
    private = rig.head.temp_dir / "private-out"
    command = sweep(rig, folder)
    command[command.index("--out") + 1] = str(private)
    submit(rig, "spread", command)
    assert wait_job(rig, "spread") == "SUCCEEDED", job_logs(rig, "spread")[-4000:]

    fetched = rig.run("client", [sys.executable, "-m", "pluralign.jobs.submit", "--address",
                                 rig.dashboard_url, "--fetch", "spread", "--to",
                                 str(folder / "fetched")], timeout=60)
    summary = json.loads((folder / "fetched" / "summary.json").read_text())
    assert summary == json.loads((private / "summary.json").read_text()), fetched.stdout
    counts = placement_counts(summary)
    hosts = counts["placement"]
    workers = sorted(rig.hosts[w].address for w in WORKERS)
    assert hosts["actors_by_host"] == {w: 2 for w in workers}  # spread, none on the head
    assert sorted(hosts["items_by_host"]) == workers
    assert sum(hosts["items_by_host"].values()) == ITEMS == counts["completed"]
    assert counts["lost"] == 0 and counts["duplicated"] == 0 and hosts["hosts_lost"] == []
    figures("spread", actors_by_host=hosts["actors_by_host"],
            items_by_host=hosts["items_by_host"], fetched=fetched.stdout.strip())


def test_the_hosts_share_one_rate_budget_through_redis(rig: Cluster) -> None:
    # The limiter's budget is per minute, so the provider counts real 60-second windows here;
    # 5 requests/s for ~90 s fills more than one.
    rpm, scenarios = 300, 90
    rig.restart_provider("--rpm", str(rpm), "--rpm-window", "60", "--latency", "0.3")
    try:
        folder = _run_folder(rig, "budget")
        submit(rig, "budget", sweep(rig, folder, limit=scenarios, rpm=rpm))
        assert wait_job(rig, "budget", timeout=400) == "SUCCEEDED", \
            job_logs(rig, "budget")[-4000:]
        stats: dict[str, Any] = rig.provider_stats()
    finally:
        rig.restart_provider(*PROVIDER_FLAGS)
    hosts = placement_counts(json.loads((folder / "out" / "summary.json").read_text()))
    items_by_host = hosts["placement"]["items_by_host"]
    assert sorted(items_by_host) == sorted(rig.hosts[w].address for w in WORKERS)
    over, most, share = budget_use(stats, rpm, 60.0)
    assert stats["by_status"] == {"200": scenarios * 5}  # no 429: one budget, not one each
    assert over == 0 and most <= rpm
    # The share of the limit used (goal >= 0.95) is a speed: printed, not asserted (it fell to
    # 0.89 once on a machine loaded 13 times over its cores).
    figures("budget", items_by_host=items_by_host, windows_over=over, most_in_window=most,
            limit_per_60s=rpm, share_used=round(share, 3), requests=stats["total"])


def test_pack_puts_every_actor_on_one_worker_host(rig: Cluster) -> None:
    reset_provider(rig)
    folder = _run_folder(rig, "pack")
    submit(rig, "pack", sweep(rig, folder, placement="pack", limit=4))
    assert wait_job(rig, "pack") == "SUCCEEDED", job_logs(rig, "pack")[-4000:]
    hosts = placement_counts(json.loads((folder / "out" / "summary.json").read_text()))
    actors = hosts["placement"]["actors_by_host"]
    assert list(actors.values()) == [4]
    assert next(iter(actors)) in {rig.hosts[w].address for w in WORKERS}
    figures("pack", actors_by_host=actors)


def test_a_host_cut_off_mid_run_loses_nothing_and_one_that_joins_gets_work(
        rig: Cluster) -> None:
    reset_provider(rig)
    folder = _run_folder(rig, "lost")
    victim = rig.hosts["worker2"]
    items = 48 * 5  # long enough for the host to come back while the job runs
    revived = False
    try:
        submit(rig, "lost", sweep(rig, folder, limit=48))
        wait_requests(rig, 20)
        victim.kill()  # its PID namespace: raylet, actors, agents, all at once
        wait_requests(rig, 40)  # the run goes on without it
        rig.revive("worker2")  # a fresh Ray node at the same address joins the cluster
        revived = True
        assert wait_job(rig, "lost") == "SUCCEEDED", job_logs(rig, "lost")[-4000:]
    finally:
        if not revived:
            rig.revive("worker2")
    summary = json.loads((folder / "out" / "summary.json").read_text())
    counts = placement_counts(summary)
    hosts = counts["placement"]
    assert counts["completed"] == items and counts["lost"] == 0 and counts["duplicated"] == 0
    assert hosts["hosts_lost"] == [victim.address]
    assert hosts["rerouted_items"] == hosts["rerouted_from"].get(victim.address, 0)
    stats: dict[str, Any] = rig.provider_stats()
    twice = paid_twice(stats)
    # Only what the lost host had in flight can have been paid twice.
    assert twice <= hosts["rerouted_items"]
    assert len(stats["ok_by_fingerprint"]) == items  # every item answered
    log = job_logs(rig, "lost")
    assert f"hosts lost: {victim.address}" in log
    # The host that joined got actors moved to it, and answered items.
    assert hosts["hosts_joined"] == [victim.address]
    assert hosts["items_after_join"].get(victim.address, 0) > 0
    figures("lost host", host=victim.address, actors_by_host=hosts["actors_by_host"],
            items_by_host=hosts["items_by_host"], rerouted=hosts["rerouted_items"],
            lost=counts["lost"], paid_twice=twice, provider_requests=stats["total"],
            items=items, items_after_join=hosts["items_after_join"])


def test_a_killed_driver_resumes_from_the_shared_cache(rig: Cluster) -> None:
    reset_provider(rig)
    folder = _run_folder(rig, "driver")
    command = sweep(rig, folder)
    submit(rig, "driver1", command)
    wait_requests(rig, 30)
    info = job_info(rig, "driver1")
    assert info["pid"] and info["host"] == rig.head.address
    rig.run("head", ["kill", "-9", str(info["pid"])])  # the pid as the head host numbers it
    assert wait_job(rig, "driver1") == "FAILED"
    before: dict[str, Any] = rig.provider_stats()

    submit(rig, "driver2", command)
    assert wait_job(rig, "driver2") == "SUCCEEDED", job_logs(rig, "driver2")[-4000:]
    counts = placement_counts(json.loads((folder / "out" / "summary.json").read_text()))
    stats: dict[str, Any] = rig.provider_stats()
    resent = paid_twice(stats)
    assert len(stats["ok_by_fingerprint"]) == ITEMS
    assert counts["cached"] + counts["completed"] == ITEMS and counts["cached"] > 0
    assert counts["completed"] == ITEMS - counts["cached"]
    # What the second driver sent again is what the first had bought but not written: at most
    # the answers of one flush window (2 s at the budget's 4 requests/s) and the requests in
    # flight (concurrency 4 x 4 actors).
    assert resent == int(before["total"]) - counts["cached"]
    assert resent <= FLUSH_SECONDS * RPM / RPM_WINDOW + 1 + 4 * 4
    figures("driver killed", answered_before_kill=before["total"], cached=counts["cached"],
            resent=resent, completed_by_resubmission=counts["completed"])


def test_sharded_realignment_over_both_workers_equals_local(rig: Cluster) -> None:
    out = rig.run("client", [
        "ray", "job", "submit", "--address", rig.dashboard_url, "--submission-id", "realign",
        "--runtime-env-json", json.dumps({"env_vars": {"PYTHONPATH": str(REPO)}}), "--",
        "python", "-m", "tests.cluster.realign_job"], timeout=300)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("realign-result: "))
    result = json.loads(line.split(": ", 1)[1])
    assert result["equal"] is True
    assert result["hosts"] == sorted(rig.hosts[w].address for w in WORKERS)
    figures("sharded realign", **result)


def test_an_open_cluster_address_and_a_wrong_token_are_refused(rig: Cluster) -> None:
    refused = rig.run("client", [sys.executable, "-m", "pluralign.jobs.submit", "sweep",
                                 "--benchmark", SYNTHETIC, "--scorer", "random"],
                      check=False, timeout=120, RAY_AUTH_MODE="disabled",
                      RAY_ADDRESS=rig.gcs_address)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert "RAY_AUTH_MODE=disabled with the non-loopback Ray address" in refused.stderr
    wrong = rig.base / "wrong_token"
    wrong.write_text("0" * 64)
    denied = rig.run("client", ["ray", "job", "list", "--address", rig.dashboard_url],
                     check=False, timeout=120, RAY_AUTH_TOKEN_PATH=str(wrong))
    allowed = rig.run("client", ["ray", "job", "list", "--address", rig.dashboard_url],
                      check=False, timeout=120)
    assert denied.returncode != 0 and allowed.returncode == 0, denied.stderr[-2000:]


_REPLICA_HOSTS = """
import json, sys, ray
from ray.util.state import list_actors
ray.init(address=sys.argv[1], log_to_driver=False)
nodes = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
replicas = list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
print(json.dumps(sorted(nodes[a.node_id] for a in replicas if "pluralign-align" in a.class_name)))
"""

_QUERY = """
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="POST",
    headers={"Authorization": "Bearer " + open(sys.argv[3]).read().strip(),
             "Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=60).read().decode())
"""


def test_serve_ray_has_a_replica_on_each_worker_and_answers_the_client(rig: Cluster) -> None:
    from pluralign.engine.align.realign import realign
    from pluralign.engine.data.sources import load_benchmark
    from pluralign.engine.data.targets import all_targets
    from pluralign.engine.scorers import get_scorer, score_through_cache
    from pluralign.engine.store.cache import ScoreCache

    spec = "synthetic:S=30,R=2-4,A=4,L=5,seed=8"
    cache = rig.shared / "serve-cache"
    bench = load_benchmark(spec, "eval")
    preds = score_through_cache(get_scorer("random", seed=4), bench, ScoreCache(cache))
    token = rig.shared / "serve-token"
    token.write_text("serve-" + "1" * 26)
    token.chmod(0o600)
    pid_file = rig.head.temp_dir / "serve.pid"
    rig.hosts["head"].spawn(
        ["sh", "-c", f'echo $$ > {pid_file}; exec "$@"', "sh", "pluralign", "serve", "--ray",
         "--address", rig.gcs_address, "--host", "0.0.0.0", "--port", "8321", "--replicas",
         "3", "--token-file", str(token), "--cache", str(cache),
         "--max-synthetic-scenarios", "100"], rig.env("head"), rig.base / "serve.log")
    url = f"http://{rig.head.address}:8321/v1/align"
    body = json.dumps({"benchmark": spec, "scorer": "random", "seed": 4, "targets": ["all"]})
    try:
        deadline = time.monotonic() + 240
        while True:
            out = rig.run("client", [sys.executable, "-c", _QUERY, url, body, str(token)],
                          check=False, timeout=90)
            if out.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert out.returncode == 0, out.stderr[-2000:] + (rig.base / "serve.log").read_text()[-3000:]
        answer = json.loads(out.stdout)
        res = realign(bench, preds, all_targets(bench.attributes, bench.levels), weighted=True)
        assert [r["correct"] for r in answer["targets"]] == res.correct.tolist()
        hosts = json.loads(rig.run("head", [sys.executable, "-c", _REPLICA_HOSTS,
                                            rig.gcs_address], timeout=120).stdout.splitlines()[-1])
        assert {rig.hosts[w].address for w in WORKERS} <= set(hosts), hosts
        figures("serve --ray", replica_hosts=hosts)
    finally:
        if pid_file.exists():  # Ctrl-C: the command shuts its deployment down
            rig.run("head", ["kill", "-INT", pid_file.read_text().strip()], check=False)
        rig.run("head", ["serve", "shutdown", "-y", "--address", rig.dashboard_url],
                check=False, timeout=120)
