"""Entry point for Ray jobs: ``ray job submit --working-dir . -- python -m pluralign.jobs.submit sweep ...``.

It connects this driver to the cluster the job runs on (``ray.init(address="auto")``), so the
scheduler's API-client actors and vLLM replicas are placed on the cluster's nodes, then runs the
``pluralign`` command line with the remaining arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _split(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        prog="python -m pluralign.jobs.submit",
        description="Run a pluralign command as the driver of a Ray job.",
        epilog="Everything after the options is a pluralign command, e.g. "
               "sweep --scorer comparative-regression --model M ...",
    )
    p.add_argument("--address", default="auto",
                   help="Ray cluster to join (default: auto, the job's own cluster)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the pluralign command line")
    args = p.parse_args(list(argv))
    if not args.command:
        p.error("give a pluralign command, e.g. sweep --scorer comparative-regression ...")
    return args, list(args.command)


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
        connect(args.address)
    except PluralignError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from pluralign.jobs.cli import main as cli_main

    try:
        return cli_main(command)
    finally:
        import ray

        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
