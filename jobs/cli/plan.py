"""``pluralign plan``: what a sweep with these flags would send, cost and take; sends nothing.

Items left after the cache, other runs' claims and open batches; prompt tokens (exact with the
model's tokenizer where one is at hand, else an estimate that says so); completion tokens
(``--max-tokens``, or the measured mean of cached answers of the same judge); cost per lane
from a price table (``--prices FILE``, or the shipped table with its date); time at
``--rpm``/``--tpm``. ``--json`` prints it as one JSON object.
"""

from __future__ import annotations

import argparse
import json

from pluralign.engine.errors import InputError
from pluralign.jobs.cli.args import LLM_SCORERS, add_llm_args, llm_config
from pluralign.jobs.cli.flags import add_config_flags, config_from_args
from pluralign.jobs.plan_sweep import plan_sweep
from pluralign.jobs.sweep import SweepConfig


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("plan", help="what an LLM sweep would send and cost (sends nothing)",
                       description=__doc__)
    add_config_flags(p, SweepConfig, skip={"llm", "reward", "out", "per_scenario_all",
                                           "shards", "memory_budget", "seed", "value"},
                     nargs={"targets"}, metavars={"targets": "SET", "data": "DIR",
                                                  "cache": "DIR", "limit": "N"},
                     extra_help={"scorer": "LLM judges: " + ", ".join(LLM_SCORERS) + "."})
    add_llm_args(p)
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.scorer not in LLM_SCORERS:
        raise InputError(f"{args.scorer!r} calls no LLM: nothing to plan", field="scorer",
                         hint=f"LLM judges: {', '.join(LLM_SCORERS)}")
    config = config_from_args(SweepConfig, args, out="", llm=llm_config(args), reward=None)
    planned = plan_sweep(config)
    print(json.dumps(planned.as_dict()) if args.json else planned.text())
    return 0
