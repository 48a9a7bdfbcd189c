"""Cluster entry points: ``python -m pluralign.jobs.submit``, ``ray_cluster.yaml`` against Ray's launcher
schema, RAY_AUTH_MODE in every documented command, and a real ``ray job submit`` to a local
head running a sweep end to end against the fake server."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_openai import FAKE_KEY, FAKE_KEY_ENV, make_fake_server

__all__ = ["make_fake_server"]

REPO = Path(__file__).resolve().parents[2]


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (never 6379)."""
    socks, ports = [], []
    while len(ports) < n:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
        if port != 6379:
            socks.append(s)
            ports.append(port)
        else:
            s.close()
    for s in socks:
        s.close()
    return ports


# ---------------------------------------------------------------- static checks


def test_submit_splits_its_own_options_from_the_command() -> None:
    from pluralign.jobs.submit import _split

    args, command = _split(["--address", "ray://h:10001", "sweep", "--limit", "5"])
    assert args.address == "ray://h:10001" and command == ["sweep", "--limit", "5"]
    args, command = _split(["sweep", "--scorer", "oracle"])
    assert args.address == "auto" and command == ["sweep", "--scorer", "oracle"]
    with pytest.raises(SystemExit):
        _split([])


def test_the_result_line_carries_the_out_folder_and_its_summary(tmp_path: Path) -> None:
    from pluralign.jobs.submit import out_of, parse_result, result_line

    assert out_of(["sweep", "--out", "runs/a", "--limit", "3"]) == Path("runs/a")
    assert out_of(["sweep", "--out=runs/b"]) == Path("runs/b")
    assert out_of(["sweep", "--limit", "3"]) is None
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"scenarios": 6, "sets": []}))
    (out / "per_target.parquet").write_bytes(b"")
    log = f"progress\n{result_line(out, '10.0.0.11')}\nray: shutting down\n"
    result = parse_result(log)
    assert result == {"host": "10.0.0.11", "out": str(out.resolve()),
                      "files": ["per_target.parquet", "summary.json"],
                      "summary": {"scenarios": 6, "sets": []}}
    assert parse_result("no result here\n") is None


def test_cluster_yaml_is_valid_for_the_ray_launcher() -> None:
    yaml = pytest.importorskip("yaml")
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import validate_config

    config = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    validate_config(config)  # raises jsonschema.ValidationError on a bad key or type
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert any("GPU" in t["node_config"]["InstanceType"] or "g5" in
               t["node_config"]["InstanceType"] for t in types.values())
    assert "vllm_replica" in types["gpu_worker"]["resources"]
    assert "api_client" in types["cpu_worker"]["resources"]
    for cmd in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" in cmd:
            assert "RAY_AUTH_MODE=token" in cmd


def test_every_documented_ray_command_sets_ray_auth_mode() -> None:
    text = (REPO / "docs" / "cluster.md").read_text()
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S)
    commands = [ln.strip() for b in blocks for ln in b.replace("\\\n", " ").splitlines()]
    ray_cmds = [c for c in commands if re.search(r"(^|\s)ray\s+(start|up|job|stop|down|"
                                                 r"attach|exec|submit|status|dashboard)", c)]
    assert len(ray_cmds) >= 4
    for c in ray_cmds:
        assert re.search(r"RAY_AUTH_MODE=(token|disabled)", c), c


# ---------------------------------------------------------------- a real local head


@pytest.fixture
def ray_head(ray_tmp: Path) -> Iterator[dict[str, Any]]:
    """`ray start --head` on free ports with auth disabled explicitly, its files in ``ray_tmp``
    (tests/conftest.py); stopped afterwards."""
    if shutil.which("ray") is None:
        pytest.skip("ray CLI not installed")
    gcs, dash, client, agent, agent_grpc, metrics, node, obj, rte = free_ports(9)
    temp = ray_tmp
    # Loopback only, as docs/cluster.md's local recipe (auth disabled needs it: the job's
    # driver refuses an unauthenticated cluster at a network address).
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", FAKE_KEY_ENV: FAKE_KEY,
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    start = [
        "ray", "start", "--head", "--node-ip-address", "127.0.0.1",
        "--port", str(gcs), "--dashboard-port", str(dash),
        "--dashboard-host", "127.0.0.1", "--ray-client-server-port", str(client),
        "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port",
        str(agent_grpc), "--metrics-export-port", str(metrics), "--node-manager-port",
        str(node), "--object-manager-port", str(obj), "--runtime-env-agent-port", str(rte),
        "--num-cpus", "2", "--object-store-memory", "100000000", "--temp-dir", str(temp),
        "--disable-usage-stats",
    ]
    out = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
    try:
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        yield {"env": env, "dashboard": f"http://127.0.0.1:{dash}",
               "address": f"127.0.0.1:{gcs}"}
    finally:
        stop_head(temp, gcs)


def stop_head(temp: Path, gcs_port: int) -> None:
    """Stop only this head: the processes whose command line names its temp dir or its GCS
    address (the Ray client proxy names only the latter), and their children. (`ray stop`
    would kill every Ray process on the machine, other people's too.)"""
    psutil = pytest.importorskip("psutil")
    gcs = re.compile(rf":{gcs_port}(\D|$)")
    # The folder itself, not a longer name it begins (another run's .../ray1 in .../ray12).
    folder = re.compile(rf"{re.escape(str(temp))}(?![\w.-])")
    ours = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = proc.info["cmdline"] or []
            if any("ray" in part for part in cmd) and any(
                folder.search(part) or gcs.search(part) for part in cmd
            ):
                ours.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    family = {p.pid: p for p in ours}
    for p in ours:
        try:
            family.update({c.pid: c for c in p.children(recursive=True)})
        except psutil.NoSuchProcess:
            continue
    procs = [p for p in family.values() if p.pid != os.getpid()]
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=10)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_job_submit_runs_a_sweep_end_to_end(
    ray_head: dict[str, Any], tmp_path: Path, make_fake_server: Any
) -> None:
    from pluralign.engine.data.sources import load_benchmark
    from pluralign.engine.judges.fake_answerer import label_answerer

    spec = "synthetic:S=6,R=2-2,A=3,L=5,seed=7"
    bench = load_benchmark(spec, "eval")
    server = make_fake_server(answerer=label_answerer(bench, noise=0.05))
    out, cache = tmp_path / "out", tmp_path / "cache"
    submit = [
        "ray", "job", "submit", "--address", ray_head["dashboard"], "--working-dir", str(REPO),
        "--runtime-env-json", json.dumps({"env_vars": {"OMP_NUM_THREADS": "1"}}),
        "--", "python", "-m", "pluralign.jobs.submit", "sweep", "--benchmark", spec,
        "--scorer", "comparative-regression", "--backend", "openai", "--base-url", server.url,
        "--model", "fake-model", "--api-key-env", FAKE_KEY_ENV, "--zero-shot", "--actors", "2",
        "--concurrency", "2", "--targets", "all", "high", "--out", str(out),
        "--cache", str(cache),
    ]

    def run_job() -> subprocess.CompletedProcess[str]:
        return subprocess.run(submit, env=ray_head["env"], capture_output=True, text=True,
                              timeout=300, cwd=tmp_path)

    first = run_job()
    log = first.stdout[-4000:] + first.stderr[-4000:]
    assert first.returncode == 0, log
    assert server.stats()["total"] == 6 * 3, log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenarios"] == 6 and summary["scorer"].startswith("comparative-regression")
    assert FAKE_KEY not in first.stdout + first.stderr

    second = run_job()
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert server.stats()["total"] == 6 * 3  # everything came from the cache
