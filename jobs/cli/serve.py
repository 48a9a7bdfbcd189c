"""``pluralign serve``: answer re-alignment queries over HTTP from the score cache alone.

``POST /v1/align`` {"benchmark", "scorer" | "scorer_id", "targets": [{...} | "all" | ...],
"per_scenario"} -> accuracy, weighted score, counted/correct (and the chosen response per
scenario); ``GET /v1/scorers``; ``GET /healthz``. Binds 127.0.0.1 by default; any other
address needs a bearer token ($PLURALIGN_SERVE_TOKEN or --token-file). ``--ray`` runs it as a
Ray Serve deployment with replicas (or autoscaling) instead of one local process.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="HTTP service for cached re-alignment queries",
                       description=__doc__)
    p.add_argument("--cache", default=None,
                   help="score cache folder (default: $PLURALIGN_CACHE or the user cache dir)")
    p.add_argument("--data", default=None,
                   help="data folder (default: $PLURALIGN_DATA, then the user data dir)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8321, help="port (default 8321)")
    p.add_argument("--token-file", default=None,
                   help="file holding the bearer token (else $PLURALIGN_SERVE_TOKEN)")
    p.add_argument("--lru", type=int, default=16,
                   help="predictions and label indexes kept in memory (each, LRU)")
    p.add_argument("--max-body", type=int, default=1 << 20, help="request size limit (bytes)")
    p.add_argument("--max-targets", type=int, default=120_000,
                   help="targets per request (413 beyond)")
    from pluralign.jobs.sharded import budget_arg

    p.add_argument("--memory-budget", default=None, type=budget_arg,
                   help="memory of one re-alignment (512M, 2G, 25%%; default 1/8 of RAM)")
    p.add_argument("--ray", action="store_true",
                   help="run as a Ray Serve deployment (replicas, autoscaling)")
    p.add_argument("--address", default=None,
                   help="Ray cluster to deploy on (default: a new loopback-only local Ray)")
    p.add_argument("--replicas", type=int, default=1, help="Ray Serve replicas")
    p.add_argument("--autoscale", default=None, metavar="MIN,MAX",
                   help="autoscale Ray Serve replicas between MIN and MAX")
    p.set_defaults(func=run)


def _autoscale(text: str | None) -> tuple[int, int] | None:
    from pluralign.engine.errors import InputError

    if text is None:
        return None
    try:
        lo, hi = (int(x) for x in text.split(","))
    except ValueError:
        raise InputError(f"not MIN,MAX: {text!r}", field="autoscale") from None
    if not 0 <= lo <= hi or hi < 1:
        raise InputError(f"need 0 <= MIN <= MAX and MAX >= 1: {text!r}", field="autoscale")
    return lo, hi


def run(args: argparse.Namespace) -> int:
    import os

    from pluralign.engine.align.realign import parse_memory_budget
    from pluralign.jobs.runtime import cache_dir
    from pluralign.jobs.serve.http import check_bind, load_token, serve_local
    from pluralign.jobs.serve.query import Limits, QueryService

    token = load_token(args.token_file)
    check_bind(args.host, token)
    budget = parse_memory_budget(args.memory_budget)
    limits = Limits(max_body=args.max_body, max_targets=args.max_targets)
    cache = str(cache_dir(args.cache))
    data = args.data or os.environ.get("PLURALIGN_DATA")
    if not args.ray:
        service = QueryService(cache, data, lru=args.lru, limits=limits, memory_budget=budget)
        serve_local(service, token, args.host, args.port)
        return 0
    return _run_ray(args, cache, data, limits, budget, token)


def _run_ray(args: argparse.Namespace, cache: str, data: str | None, limits: object,
             budget: int, token: str | None) -> int:
    import signal
    import threading

    import ray
    from ray import serve

    from pluralign.jobs.runtime import progress
    from pluralign.jobs.serve.ray_serve import build

    if args.address:
        from pluralign.jobs.llm_scoring import refuse_open_cluster

        refuse_open_cluster(args.address)
        ray.init(address=args.address, log_to_driver=False)
    else:
        from pluralign.jobs.llm_scoring import init_local_ray

        init_local_ray()
    serve.start(http_options={"host": args.host, "port": args.port})
    app = build(cache, data, lru=args.lru, limits=limits,  # type: ignore[arg-type]
                memory_budget=budget, token=token, replicas=args.replicas,
                autoscale=_autoscale(args.autoscale))
    serve.run(app, name="pluralign", route_prefix="/")
    progress(f"Ray Serve: http://{args.host}:{args.port} ({args.replicas} replica(s)"
             f"{', autoscaling ' + args.autoscale if args.autoscale else ''}); Ctrl-C stops")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
    return 0
