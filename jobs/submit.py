"""Entry point for Ray jobs: ``ray job submit --working-dir . -- python -m pluralign.jobs.submit sweep ...``.

It connects this driver to the cluster the job runs on (``ray.init(address="auto")``), so the
scheduler's API-client actors and vLLM replicas are placed on the cluster's nodes, then runs the
``pluralign`` command line with the remaining arguments. The command's ``--out`` folder is
written on the driver's host (the head); the driver ends its log with one ``pluralign-result:``
line (that host, the folder, its files and summary.json), so whoever submitted the job gets the
summary back with ``python -m pluralign.jobs.submit --fetch JOB_ID --to DIR`` even where the
folder is on a disk only the head sees.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULT_PREFIX = "pluralign-result: "
"""Starts the job log's line that carries the result (:func:`result_line`)."""


def _split(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        prog="python -m pluralign.jobs.submit",
        description="Run a pluralign command as the driver of a Ray job.",
        epilog="Everything after the options is a pluralign command, e.g. "
               "sweep --scorer comparative-regression --model M ...",
    )
    p.add_argument("--address", default="auto",
                   help="Ray cluster to join (default: auto, the job's own cluster); with "
                        "--fetch, the job server (http://HEAD:8265)")
    p.add_argument("--fetch", metavar="JOB_ID", default=None,
                   help="instead of running a command: read a finished job's result line from "
                        "its log and write its summary.json into --to")
    p.add_argument("--to", metavar="DIR", default=".", help="where --fetch writes (default: .)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the pluralign command line")
    args = p.parse_args(list(argv))
    if not args.command and not args.fetch:
        p.error("give a pluralign command, e.g. sweep --scorer comparative-regression ...")
    return args, list(args.command)


def out_of(command: Sequence[str]) -> Path | None:
    """The ``--out`` folder a pluralign command line names, if any."""
    for i, arg in enumerate(command):
        if arg == "--out" and i + 1 < len(command):
            return Path(command[i + 1])
        if arg.startswith("--out="):
            return Path(arg.split("=", 1)[1])
    return None


def result_line(out: Path, host: str) -> str:
    """One log line: the driver's host, the absolute ``out`` folder, its files and the parsed
    summary.json (which carries its manifest; secrets are redacted in it already)."""
    info: dict[str, Any] = {"host": host, "out": str(out.resolve()),
                            "files": sorted(p.name for p in out.iterdir()) if out.is_dir() else []}
    summary = out / "summary.json"
    if summary.is_file():
        info["summary"] = json.loads(summary.read_text())
    return RESULT_PREFIX + json.dumps(info, sort_keys=True)


def parse_result(log: str) -> dict[str, Any] | None:
    """The last result line of a job log, parsed; None when the job wrote none."""
    for line in reversed(log.splitlines()):
        if line.startswith(RESULT_PREFIX):
            found: dict[str, Any] = json.loads(line[len(RESULT_PREFIX):])
            return found
    return None


def fetch(address: str, job_id: str, to: Path) -> Path:
    """Write the summary.json of job ``job_id`` (from its log) into ``to``; returns its path."""
    from ray.job_submission import JobSubmissionClient

    from pluralign.engine.errors import InputError
    from pluralign.jobs.runtime import write_json_atomic

    if address == "auto":
        address = os.environ.get("RAY_API_SERVER_ADDRESS") or "http://127.0.0.1:8265"
    result = parse_result(JobSubmissionClient(address).get_job_logs(job_id))
    if result is None or "summary" not in result:
        raise InputError(f"job {job_id} logged no result (it failed, or ran no command with "
                         "--out)", field="fetch")
    path = to / "summary.json"
    write_json_atomic(path, result["summary"])
    print(f"{path} (the job wrote {', '.join(result['files'])} in {result['out']} on "
          f"{result['host']})")
    return path


def connect(address: str) -> None:
    """Join the cluster; the job's environment (RAY_ADDRESS, RAY_AUTH_MODE) decides the rest.

    With ``RAY_AUTH_MODE=disabled`` a cluster at a non-loopback address is refused: anyone who
    reaches it could run code there and read the API keys of its actors.
    """
    import ray

    from pluralign.jobs.ray_runtime import refuse_open_cluster

    if not ray.is_initialized():
        refuse_open_cluster(os.environ.get("RAY_ADDRESS") or address)
        # No runtime_env here: the job's own (working_dir, env_vars from --runtime-env-json)
        # applies. Quiet worker logs: progress lines come from this driver.
        ray.init(address=address, log_to_driver=False)


def main(argv: Sequence[str] | None = None) -> int:
    args, command = _split(sys.argv[1:] if argv is None else argv)
    from pluralign.engine.errors import PluralignError

    try:
        if args.fetch:
            fetch(args.address, args.fetch, Path(args.to))
            return 0
        connect(args.address)
    except PluralignError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import ray

    from pluralign.jobs.cli import main as cli_main

    try:
        code = cli_main(command)
        out = out_of(command)
        if out is not None and out.is_dir():
            host = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
            print(result_line(out, host), flush=True)
        return code
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
