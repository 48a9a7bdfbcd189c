"""A Ray cluster of several hosts on one machine, for the cluster tests and for people.

Each host is a network namespace with its own address on a private /24 (a veth pair into one
Linux bridge) and runs in its own PID namespace, so killing that namespace's init ends
everything the host ran (Ray's agents included) and cuts it off like a lost machine; its
/dev/shm is its own (a tmpfs that goes with it). The hosts:

========  =====  =========================================================================
head      .11    Ray head (GCS, dashboard, job server; the job driver runs here), Redis
worker1   .12    Ray worker, advertises ``api_client`` (API-client actors go there)
worker2   .13    Ray worker, advertises ``api_client``
client    .14    no Ray: submits jobs with ``ray job submit`` over the network
provider  .15    the fake OpenAI-compatible server (a remote provider)
========  =====  =========================================================================

Every host sees the machine's filesystem: a folder they are all told about behaves like a
cluster's shared filesystem (NFS, EFS); each Ray node gets its own temp folder. The cluster
uses token authentication (one token file). Run it by hand with::

    sudo python -m tests.cluster.rig up          # prints the hosts; Ctrl-C tears it all down
    sudo python -m tests.cluster.rig run client -- ray job list --address http://HEAD:8265
    sudo python -m tests.cluster.rig down        # removes what a killed `up` left behind

A test may bring up fewer hosts (``cluster(hosts=...)``), give a worker other resources than
``api_client`` (``resources={"worker1": {"vllm_replica": 1}}``) and add variables to every
host's environment (``extra_env``); tests/real_engine/test_cluster_replica.py places a vLLM
replica on a worker host that way.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STATE = Path(tempfile.gettempdir()) / "pluralign-cluster-rig.json"
"""Where ``up`` records what it made, so ``run`` and ``down`` find it."""

HOSTS = {"head": 11, "worker1": 12, "worker2": 13, "client": 14, "provider": 15}
"""Host name -> last octet of its address."""
WORKERS = ("worker1", "worker2")

GCS_PORT = 6380
DASHBOARD_PORT = 8265
REDIS_PORT = 6390
"""Redis on the head host (6379 is the GCS's default elsewhere: kept clear)."""
PROVIDER_PORT = 8000
OBJECT_STORE = 100_000_000
"""Bytes of object store per Ray node (Ray's default, 30 % of RAM, is far too much here)."""
WORKER_RESOURCES = {"api_client": 8}
"""What each worker host advertises: API-client actors ask for one unit, so none lands on the
head (where the driver runs)."""
FAKE_KEY_ENV = "PLURALIGN_RIG_KEY"
"""The fake provider's API key variable, set on the worker hosts only (actors read keys from
their node's environment)."""


class RigUnavailable(RuntimeError):
    """Namespaces, bridges or veth pairs cannot be made here (not root, or no permission)."""


def unavailable() -> str | None:
    """Why the rig cannot be brought up by this process (one line), or None when it can: not
    root, a missing command (``redis-server``, ``nsenter``, this Python's ``ray``), or
    namespaces refused (:func:`probe`). The test fixtures skip with this line."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [t for t in ("redis-server", "nsenter") if shutil.which(t) is None]
    if not (Path(sys.executable).parent / "ray").exists():
        missing.append(f"ray (beside {Path(sys.executable).name})")
    if missing:
        return f"{', '.join(missing)} not installed"
    return probe()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def probe() -> str | None:
    """Why a rig cannot be made here (one line), or None when it can."""
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "no `ip`/`unshare` command (iproute2, util-linux)"
    name = f"plprobe{os.getpid() % 100000}"
    made = _ip("netns", "add", name, check=False)
    if made.returncode != 0:
        return f"network namespaces not permitted: {made.stderr.strip()[:120]}"
    _ip("netns", "del", name, check=False)
    return None


def free_subnet() -> ipaddress.IPv4Network:
    """A 10.251.N.0/24 that no interface or route of this machine uses."""
    used = _ip("-4", "addr").stdout + _ip("-4", "route").stdout
    for n in [*range(251, 255), *range(200, 251)]:
        net = ipaddress.IPv4Network(f"10.251.{n}.0/24")
        if f"10.251.{n}." not in used:
            return net
    raise RigUnavailable("no free 10.251.N.0/24 subnet")


@dataclass
class Host:
    """One host: a network namespace, a PID namespace whose init is ``init_pid`` (in this
    machine's PID numbering), an address and a Ray temp folder."""

    name: str
    address: str
    netns: str
    veth: str
    temp_dir: Path
    init_pid: int = 0
    unshare_pid: int = 0

    def command(self, args: Sequence[str]) -> list[str]:
        """``args`` run inside this host (its network, PID and mount namespaces)."""
        return ["nsenter", f"--target={self.init_pid}", "--net", "--pid", "--mount", "--",
                *args]

    def run(self, args: Sequence[str], env: Mapping[str, str], *, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(self.command(args), env=dict(env), capture_output=True, text=True,
                             timeout=timeout)
        if check and out.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(args[:4])}... exited {out.returncode}:"
                               f"\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
        return out

    def spawn(self, args: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        """Start a long-running process in this host (it dies with the host)."""
        with log.open("ab") as f:
            subprocess.Popen(self.command(args), env=dict(env), stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.init_pid > 0 and Path(f"/proc/{self.init_pid}").exists()

    def kill(self) -> None:
        """Cut the host off: its PID namespace's init dies, and with it every process there."""
        for pid in (self.init_pid, self.unshare_pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if pid > 0:
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)


@dataclass
class Cluster:
    """The rig: hosts by name, the bridge, the token file and the shared folder."""

    base: Path
    subnet: str
    bridge: str
    hosts: dict[str, Host] = field(default_factory=dict)
    token_file: Path = Path()
    shared: Path = Path()
    """A folder every host is told about: the cluster's shared filesystem."""
    provider_flags: tuple[str, ...] = ()
    resources: dict[str, dict[str, float]] = field(default_factory=dict)
    """Worker host -> the custom resources it advertises (default :data:`WORKER_RESOURCES`)."""
    extra_env: dict[str, str] = field(default_factory=dict)
    """Variables added to every host's environment (Ray nodes pass them to their actors)."""

    # -- addresses and environments -----------------------------------------------------
    @property
    def head(self) -> Host:
        return self.hosts["head"]

    @property
    def workers(self) -> list[str]:
        """The worker hosts this rig has (both, unless it was brought up with fewer)."""
        return [name for name in WORKERS if name in self.hosts]

    @property
    def gcs_address(self) -> str:
        return f"{self.head.address}:{GCS_PORT}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.head.address}:{DASHBOARD_PORT}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.head.address}:{REDIS_PORT}/0"

    @property
    def provider_url(self) -> str:
        return f"http://{self.hosts['provider'].address}:{PROVIDER_PORT}/v1"

    def env(self, host: str, **extra: str) -> dict[str, str]:
        """The environment processes on ``host`` start with: token auth, one thread each,
        this checkout's virtual environment first on PATH, the key on worker hosts only."""
        venv_bin = Path(sys.executable).parent
        env = {
            "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.base / "home" / host),
            "LANG": "C.UTF-8",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token_file),
            "RAY_USAGE_STATS_ENABLED": "0",
            "OMP_NUM_THREADS": "1",
            "NUMBA_NUM_THREADS": "1",
            "PLURALIGN_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            # A lost host is noticed within a few seconds (Ray's default is ~30 s).
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
            "RAY_health_check_timeout_ms": "1000",
        }
        if "PLURALIGN_DATA" in os.environ:
            env["PLURALIGN_DATA"] = os.environ["PLURALIGN_DATA"]
        if host in WORKERS:
            env[FAKE_KEY_ENV] = fake_key()
        env.update(self.extra_env)
        env.update(extra)
        return env

    def run(self, host: str, args: Sequence[str], *, timeout: float = 120, check: bool = True,
            **extra: str) -> subprocess.CompletedProcess[str]:
        """Run ``args`` on ``host`` with its environment; returns the finished process."""
        return self.hosts[host].run(args, self.env(host, **extra), timeout=timeout, check=check)

    # -- bringing hosts up ----------------------------------------------------------------
    def _make_host(self, name: str) -> Host:
        net = ipaddress.IPv4Network(self.subnet)
        tag = self.bridge.removeprefix("plb")
        host = Host(name=name, address=str(net.network_address + HOSTS[name]),
                    netns=f"pl{tag}-{name}", veth=f"plv{tag}{HOSTS[name]}",
                    temp_dir=self.base / f"{name[0]}{name[-1]}")
        self.hosts[name] = host  # recorded first: teardown removes whatever exists
        peer = f"plp{tag}{HOSTS[name]}"
        _ip("netns", "add", host.netns)
        _ip("link", "add", host.veth, "type", "veth", "peer", "name", peer, "netns", host.netns)
        _ip("link", "set", host.veth, "master", self.bridge, "up")
        for args in (("addr", "add", f"{host.address}/{net.prefixlen}", "dev", peer),
                     ("link", "set", peer, "up"), ("link", "set", "lo", "up")):
            _ip("-n", host.netns, *args)
        host.temp_dir.mkdir(parents=True, exist_ok=True)
        (self.base / "home" / name).mkdir(parents=True, exist_ok=True)
        self._respawn_init(host)
        return host

    def start_ray(self) -> None:
        head = self.head
        self.run("head", head_start(head.address, str(head.temp_dir)), timeout=180)
        for name in self.workers:
            self.start_worker(name)

    def start_worker(self, name: str) -> None:
        host = self.hosts[name]
        self.run(name, worker_start(self.head.address, host.address, str(host.temp_dir),
                                    self.resources.get(name)), timeout=180)

    def revive(self, name: str) -> None:
        """Bring a cut-off worker host back (a fresh PID namespace, Ray started again)."""
        host = self.hosts[name]
        host.kill()
        self._respawn_init(host)
        shutil.rmtree(host.temp_dir, ignore_errors=True)
        host.temp_dir.mkdir(parents=True)
        self.start_worker(name)
        self.wait_nodes(1 + len(self.workers))

    def start_redis(self) -> None:
        self.hosts["head"].spawn(redis_start(self.head.address), self.env("head"),
                                 self.base / "redis.log")

    def start_provider(self, *flags: str) -> None:
        """The fake server on the provider host. It binds loopback only (it must never face a
        real network), so a small TCP relay on the host's address forwards to it."""
        provider = self.hosts["provider"]
        env = self.env("provider")
        self.provider_flags = tuple(flags)
        provider.spawn(["pluralign", "fake-server", "--host", "127.0.0.1", "--port",
                        str(PROVIDER_PORT + 1), *flags], env, self.base / "provider.log")
        provider.spawn([sys.executable, "-m", "tests.cluster.relay", provider.address,
                        str(PROVIDER_PORT), "127.0.0.1", str(PROVIDER_PORT + 1)],
                       {**env, "PYTHONPATH": str(REPO)}, self.base / "relay.log")

    def restart_provider(self, *flags: str) -> None:
        """A fresh provider host (counters and limits from zero) with these fake-server flags."""
        provider = self.hosts["provider"]
        provider.kill()
        provider.init_pid = provider.unshare_pid = 0
        self._respawn_init(provider)
        self.start_provider(*flags)
        self.wait_provider()

    def _respawn_init(self, host: Host) -> None:
        """A PID and mount namespace for ``host`` (in its network namespace), with a /dev/shm of
        its own as a machine has: shared memory its processes leave (Ray's object store, vLLM's
        buffers of a killed engine) goes with the namespace. --kill-child: the namespace's init
        dies with unshare, which dies with the process that made it (PDEATHSIG), so even a
        killed test leaves no host running."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, "unshare", "--pid", "--fork", "--mount-proc",
             "--kill-child", "sh", "-c",
             "mount -t tmpfs -o mode=1777 tmpfs /dev/shm; exec sleep infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent)
        host.unshare_pid = proc.pid
        host.init_pid = _first_child(proc.pid)
        # Nothing enters the host before its /dev/shm is mounted (the shell has become sleep).
        _until(lambda: Path(f"/proc/{host.init_pid}/comm").read_text().strip() == "sleep", 10,
               f"{host.name}'s init")

    def wait_provider(self, timeout: float = 60) -> None:
        probe_code = ("import sys,urllib.request;"
                      f"urllib.request.urlopen('http://{self.hosts['provider'].address}:"
                      f"{PROVIDER_PORT}/fake/stats', timeout=2)")
        _until(lambda: self.run("client", [sys.executable, "-c", probe_code], check=False,
                                timeout=20).returncode == 0, timeout, "the provider to answer")

    def provider_stats(self) -> dict[str, object]:
        """The fake server's counters (``GET /fake/stats``), read from the client host."""
        code = ("import sys,urllib.request;sys.stdout.write(urllib.request.urlopen("
                f"'http://{self.hosts['provider'].address}:{PROVIDER_PORT}/fake/stats',"
                "timeout=10).read().decode())")
        out = self.run("client", [sys.executable, "-c", code], timeout=60)
        stats: dict[str, object] = json.loads(out.stdout)
        return stats

    def wait_nodes(self, n: int, timeout: float = 120) -> None:
        """Until ``ray status`` on the head counts ``n`` alive nodes."""
        def enough() -> bool:
            out = self.run("head", ["ray", "status", "--address", self.gcs_address],
                           check=False, timeout=60)
            return active_nodes(out.stdout) >= n
        _until(enough, timeout, f"{n} Ray nodes")

    def describe(self) -> str:
        lines = [f"subnet {self.subnet} on bridge {self.bridge}; shared folder {self.shared}"]
        lines += [f"  {h.name:<9}{h.address:<14}netns {h.netns}  init pid {h.init_pid}"
                  for h in self.hosts.values()]
        provider = f", provider {self.provider_url}" if "provider" in self.hosts else ""
        lines += [f"  Ray GCS {self.gcs_address}, jobs {self.dashboard_url}, "
                  f"Redis {self.redis_url}{provider}",
                  f"  token file {self.token_file} (RAY_AUTH_MODE=token)"]
        return "\n".join(lines)

    def save(self, path: Path = STATE) -> None:
        path.write_text(json.dumps({
            "base": str(self.base), "subnet": self.subnet, "bridge": self.bridge,
            "token_file": str(self.token_file), "shared": str(self.shared),
            "resources": self.resources, "extra_env": self.extra_env,
            "hosts": {n: {"address": h.address, "netns": h.netns, "veth": h.veth,
                          "temp_dir": str(h.temp_dir), "init_pid": h.init_pid,
                          "unshare_pid": h.unshare_pid} for n, h in self.hosts.items()}}))

    @classmethod
    def load(cls, path: Path = STATE) -> Cluster:
        data = json.loads(path.read_text())
        c = cls(Path(data["base"]), data["subnet"], data["bridge"],
                token_file=Path(data["token_file"]), shared=Path(data["shared"]),
                resources=data.get("resources", {}), extra_env=data.get("extra_env", {}))
        for name, h in data["hosts"].items():
            c.hosts[name] = Host(name, h["address"], h["netns"], h["veth"], Path(h["temp_dir"]),
                                 h["init_pid"], h["unshare_pid"])
        return c

    # -- tearing down ---------------------------------------------------------------------
    def down(self) -> None:
        """Kill every host's PID namespace, remove the namespaces, the bridge and the files.
        Safe to call twice and on a half-made rig."""
        for host in self.hosts.values():
            host.kill()
        for host in self.hosts.values():
            _ip("netns", "del", host.netns, check=False)
            _ip("link", "del", host.veth, check=False)
        _ip("link", "del", self.bridge, check=False)
        shutil.rmtree(self.base, ignore_errors=True)


# ---------------------------------------------------------------- the commands (docs/cluster.md)


def head_start(head_ip: str, temp_dir: str) -> list[str]:
    """``ray start`` of the head host (token auth comes from the environment)."""
    return ["ray", "start", "--head", "--node-ip-address", head_ip, "--port", str(GCS_PORT),
            "--dashboard-host", head_ip, "--dashboard-port", str(DASHBOARD_PORT),
            "--include-dashboard", "true", "--num-cpus", "1",
            "--object-store-memory", str(OBJECT_STORE), "--temp-dir", temp_dir,
            "--disable-usage-stats"]


def worker_start(head_ip: str, worker_ip: str, temp_dir: str,
                 resources: Mapping[str, float] | None = None) -> list[str]:
    """``ray start`` of a worker host, advertising ``api_client`` for the API-client actors
    (or ``resources``: ``{"vllm_replica": 1}`` for a host that runs a vLLM replica)."""
    advertised = WORKER_RESOURCES if resources is None else resources
    return ["ray", "start", "--address", f"{head_ip}:{GCS_PORT}", "--node-ip-address",
            worker_ip, "--num-cpus", "1", "--resources", json.dumps(dict(advertised)),
            "--object-store-memory", str(OBJECT_STORE), "--temp-dir", temp_dir,
            "--disable-usage-stats"]


def redis_start(head_ip: str) -> list[str]:
    """Redis for the shared rate limits, on the head host's address (not 6379)."""
    return ["redis-server", "--bind", head_ip, "--port", str(REDIS_PORT), "--save", "",
            "--appendonly", "no", "--protected-mode", "no"]


def job_submit(head_ip: str, submission_id: str, command: Sequence[str]) -> list[str]:
    """``ray job submit`` of a pluralign command, from any host that reaches the head."""
    return ["ray", "job", "submit", "--address", f"http://{head_ip}:{DASHBOARD_PORT}",
            "--submission-id", submission_id, "--no-wait", "--",
            "python", "-m", "pluralign.jobs.submit", *command]


SYNTHETIC = "synthetic:S=200,R=2-2,A=5,L=5,seed=7"
"""The rig's benchmark: built from its seed on the driver, so no data set is needed."""


def sweep_command(head_ip: str, provider_url: str, cache: str, out: str, *,
                  actors: int = 4, rpm: int = 240, limit: int = 16,
                  placement: str = "spread") -> list[str]:
    """The LLM sweep the rig runs: ``actors`` API clients sharing one rpm budget in Redis."""
    return ["sweep", "--benchmark", SYNTHETIC, "--scorer", "comparative-regression",
            "--zero-shot", "--targets", "all", "--limit", str(limit), "--backend", "openai",
            "--base-url", provider_url, "--api-key-env", FAKE_KEY_ENV, "--model", "fake-model",
            "--actors", str(actors), "--placement", placement, "--concurrency", "4",
            "--rpm", str(rpm), "--redis-url", f"redis://{head_ip}:{REDIS_PORT}/0",
            "--cache", cache, "--out", out]


VLLM_BENCHMARK = "synthetic:S=4,R=2,A=2,seed=3"
"""The vLLM sweep's benchmark: 4 scenarios x 2 attributes, 8 requests (CPU decoding is slow)."""


def vllm_sweep_command(model: str, cache: str, out: str,
                       engine: Mapping[str, object]) -> list[str]:
    """The sweep with one vLLM replica (``--backend vllm``): Ray places it on the host that
    advertises ``vllm_replica``; ``engine`` are vLLM's engine settings (``--engine-arg``)."""
    return ["sweep", "--benchmark", VLLM_BENCHMARK, "--scorer", "comparative-regression",
            "--zero-shot", "--max-tokens", "1200", "--targets", "all", "--backend", "vllm",
            "--model", model, "--actors", "1",
            *[f"--engine-arg={k}={v}" for k, v in engine.items()],
            "--cache", cache, "--out", out]


def shell_line(args: Sequence[str]) -> str:
    """``args`` as one shell line; ``$NAME`` placeholders stay unquoted (the docs use them)."""
    return " ".join(a if re.fullmatch(r"[\w@%+=:,./$-]+", a) else shlex.quote(a) for a in args)


def active_nodes(status: str) -> int:
    """Alive nodes in ``ray status`` output (its Active section; lost nodes are listed further
    down, under failures)."""
    if "Active:" not in status:
        return 0
    return status.split("Active:", 1)[1].split("Pending:", 1)[0].count(" node_")


def fake_key() -> str:
    """The fake provider's key (a fixed test value: the fake server checks its presence)."""
    return "sk-rig-" + "0" * 24


def _die_with_parent() -> None:
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _first_child(pid: int, timeout: float = 10) -> int:
    """The child ``unshare --fork`` made (PID 1 of the new namespace)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            kids = path.read_text().split()
            if kids:
                return int(kids[0])
        time.sleep(0.01)
    raise RigUnavailable(f"unshare (pid {pid}) made no PID namespace")


def _until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


@contextlib.contextmanager
def cluster(base: Path | None = None, provider_flags: Sequence[str] = (), *,
            hosts: Sequence[str] = tuple(HOSTS),
            resources: Mapping[str, Mapping[str, float]] | None = None,
            extra_env: Mapping[str, str] | None = None) -> Iterator[Cluster]:
    """Bring the rig up (hosts, Redis, Ray head and workers, the provider) and tear it all down
    on the way out, whatever happened. Raises RigUnavailable where it cannot.

    ``hosts``: which of :data:`HOSTS` to make (the head always; the provider's server starts
    only where its host is made); ``resources``: worker host -> the custom resources it
    advertises instead of :data:`WORKER_RESOURCES`; ``extra_env``: added to every host's
    environment."""
    unknown = sorted(set(hosts) - set(HOSTS))
    if unknown or "head" not in hosts:
        raise ValueError(f"hosts must include head and come from {', '.join(HOSTS)}: "
                         f"{', '.join(unknown) or 'no head'}")
    why = probe()
    if why is not None:
        raise RigUnavailable(why)
    # Ray's socket paths must fit 107 bytes: a short base folder, whatever the caller's is.
    root = Path(tempfile.mkdtemp(prefix="plc", dir="/tmp"))
    shared = (base or root) / "shared"
    tag = secrets.token_hex(3)
    c = Cluster(root, str(free_subnet()), f"plb{tag}", shared=shared,
                token_file=root / "auth_token",
                resources={k: dict(v) for k, v in (resources or {}).items()},
                extra_env=dict(extra_env or {}))
    try:
        c.token_file.write_text(secrets.token_hex(32))
        c.token_file.chmod(0o600)
        shared.mkdir(parents=True, exist_ok=True)
        net = ipaddress.IPv4Network(c.subnet)
        _ip("link", "add", c.bridge, "type", "bridge")
        _ip("addr", "add", f"{net.network_address + 1}/{net.prefixlen}", "dev", c.bridge)
        _ip("link", "set", c.bridge, "up")
        for name in HOSTS:
            if name in hosts:
                c._make_host(name)
        c.start_redis()
        if "provider" in c.hosts:
            c.start_provider(*provider_flags)
        c.start_ray()
        c.wait_nodes(1 + len(c.workers))
        if "provider" in c.hosts and "client" in c.hosts:
            c.wait_provider()
        yield c
    finally:
        c.down()


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.cluster.rig", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="bring the rig up; Ctrl-C tears it down")
    up.add_argument("--provider-flag", action="append", default=[],
                    help="a `pluralign fake-server` flag, e.g. --provider-flag=--rpm=60")
    run = sub.add_parser("run", help="run a command on a host of the running rig")
    run.add_argument("host", choices=list(HOSTS))
    run.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("down", help="tear down what a killed `up` left")
    args = p.parse_args(argv)
    if args.cmd == "run":
        c = Cluster.load()
        command = [a for a in args.command if a != "--"] if args.command[:1] == ["--"] \
            else args.command
        return subprocess.call(c.hosts[args.host].command(command), env=c.env(args.host))
    if args.cmd == "down":
        if STATE.exists():
            Cluster.load().down()
            STATE.unlink()
        return 0
    try:
        with cluster(provider_flags=args.provider_flag) as c:
            c.save()
            print(c.describe(), flush=True)
            print("up; Ctrl-C tears it down", flush=True)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    except RigUnavailable as e:
        print(f"cluster rig unavailable: {e}", file=sys.stderr)
        return 2
    finally:
        STATE.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
