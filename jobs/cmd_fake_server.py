"""``pluralign fake-server``: run the FAKE OpenAI-compatible server in the foreground."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "fake-server",
        help="run a fake OpenAI-compatible server on loopback (tests, offline demos)",
        description="A FAKE OpenAI-compatible chat server: schema-valid random answers, "
                    "optional RPM limit and injected faults. Loopback only. Prints its URL.")
    p.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--model", default="fake-model", help="model name it reports")
    p.add_argument("--rpm", type=int, default=None, help="requests per window per key, then 429")
    p.add_argument("--rpm-window", type=float, default=60.0, help="RPM window in seconds")
    p.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    p.add_argument("--jitter", type=float, default=0.0, help="extra random seconds (0..J)")
    p.add_argument("--fault-429", type=float, default=0.0, help="share answered 429")
    p.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of injected 429s")
    p.add_argument("--fault-5xx", type=float, default=0.0, help="share answered 500/502/503")
    p.add_argument("--fault-timeout", type=float, default=0.0, help="share that stall")
    p.add_argument("--timeout-sleep", type=float, default=30.0, help="how long stalls last")
    p.add_argument("--fault-malformed", type=float, default=0.0, help="share with a non-JSON body")
    p.add_argument("--fault-bad-content", type=float, default=0.0,
                   help="share whose answers do not match the schema")
    p.add_argument("--no-auth", action="store_true", help="accept requests without a bearer key")
    p.add_argument("--seed", type=int, default=0, help="seed for faults and answers")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pluralign.actors.fake_server import FakeOpenAIServer, FakeServerConfig
    from pluralign.engine.errors import InputError

    try:
        config = FakeServerConfig(
            host=args.host, port=args.port, model=args.model, rpm=args.rpm,
            rpm_window=args.rpm_window, latency=args.latency, jitter=args.jitter,
            fault_429=args.fault_429, retry_after=args.retry_after, fault_5xx=args.fault_5xx,
            fault_timeout=args.fault_timeout, timeout_sleep=args.timeout_sleep,
            fault_malformed=args.fault_malformed, fault_bad_content=args.fault_bad_content,
            require_auth=not args.no_auth, seed=args.seed)
    except ValueError as e:
        raise InputError(str(e), hint="see pluralign fake-server --help") from e

    def ready(url: str) -> None:
        print(url, flush=True)
        print("fake server (not a model): GET /fake/stats for counters; Ctrl-C stops",
              file=sys.stderr, flush=True)

    FakeOpenAIServer(config).serve_forever(on_ready=ready)
    return 0
