"""Flags every command shares, turned into the typed arguments of the jobs: the benchmark and
its splits, the scorer and its options, target sets, and the LLM and reward-model settings
(generated from :class:`~pluralign.jobs.configs.LLMConfig` and
:class:`~pluralign.jobs.configs.RewardConfig`, the one place their defaults and help live)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from pluralign.engine.align.realign import parse_memory_budget
from pluralign.engine.align.results import finite_or_none
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.target_sets import DEFAULT_SETS, TARGET_SET_NAMES
from pluralign.engine.errors import InputError
from pluralign.engine.judges import CHOICE_JUDGES, SCORE_JUDGES
from pluralign.jobs import api
from pluralign.jobs.cli.flags import add_config_flags, config_from_args, number
from pluralign.jobs.configs import (
    FLOAT_RANGE,
    INT_RANGE,
    MAX_SHARDS,
    LLMConfig,
    Range,
    RewardConfig,
    SplitConfig,
)
from pluralign.jobs.runtime import check_samples, note_manifest, scorer_options
from pluralign.jobs.runtime import load_splits as load_typed_splits
from pluralign.jobs.sharded import SHARD_THRESHOLD

__all__ = ["DEFAULT_SETS", "TARGET_SET_NAMES", "finite_or_none"]

LLM_SCORERS = (*SCORE_JUDGES, *CHOICE_JUDGES)
"""The LLM judges of the registry (scores, then choices)."""
CHOICE_SCORERS = CHOICE_JUDGES
"""Judges that pick a response per (scenario, target) instead of scoring attributes."""
MODEL_SCORERS = (*LLM_SCORERS, "reward")
"""Scorers that call a model (LLM judges, the reward model): commands that only read scores
compute their identity from the flags and never send anything."""

LLM_RENAME = {"engine_args": "--engine-arg"}
LLM_NEGATIVE = {"few_shot": "--zero-shot", "use_ray": "--no-ray"}
LLM_METAVARS = {"base_url": "URL", "api_key_env": "VAR", "extra_body": "JSON",
                "engine_args": "KEY=VALUE", "shots": "K", "prompts": "FILE", "samples": "N",
                "actors": "N", "concurrency": "N", "max_tokens": "N", "redis_url": "URL"}
LLM_CLI_DEFAULTS = {"use_ray": True}
"""A command runs API clients and replicas as Ray actors unless ``--no-ray``; the API runs
them in this process unless asked."""
def _aliases() -> dict[str, str]:
    out = {f"{name}=False": flag for name, flag in LLM_NEGATIVE.items()}
    out.update({f"{name}=True": "--" + name.replace("_", "-") for name in LLM_NEGATIVE})
    out.update(LLM_RENAME)
    out.update(REWARD_RENAME)
    return out


REWARD_RENAME = {"attributes": "--reward-attributes", "route": "--reward-route",
                 "squash": "--reward-squash", "batch": "--reward-batch",
                 "engine_args": "--engine-arg"}


CLI_ALIASES = _aliases()
"""API argument texts whose flag is not their plain spelling (``few_shot=False`` is
``--zero-shot``; ``engine_args`` is ``--engine-arg``), for :func:`engine.errors.cli_text`."""


def add_benchmark_args(p: argparse.ArgumentParser) -> None:
    """The flags of :class:`SplitConfig`: benchmark, data, split, train split, limit, cache."""
    add_config_flags(p, SplitConfig)


def add_scorer_args(p: argparse.ArgumentParser, scorer_help: str, *,
                    cached: bool = False) -> None:
    """The benchmark flags, ``--scorer`` and the model-free scorers' options (``--seed``,
    ``--value``); for commands that can read cached scores (``cached``), ``--scorer-id`` and
    ``--samples`` too."""
    add_benchmark_args(p)
    p.add_argument("--scorer", default="ridge", help=scorer_help)
    if cached:
        p.add_argument("--scorer-id", default=None,
                       help="exact scorer identity (as printed by sweep, e.g. of an LLM "
                            "scorer): read its cached scores instead of --scorer's")
        p.add_argument("--samples", type=number(int, Range(1)), default=None,
                       help="with cached scores: average the first N samples")
    p.add_argument("--seed", type=number(int, INT_RANGE), default=0, help="seed of the random scorer")
    p.add_argument("--value", type=number(float, FLOAT_RANGE), default=0.5, help="value of the constant scorer")


def add_target_args(p: argparse.ArgumentParser, default: Sequence[str] | None) -> None:
    p.add_argument(
        "--targets", nargs="+", default=list(default) if default else None, metavar="SET",
        help="all, sampled, high, low, target JSON files or folders, or inline targets "
             "('{\"helpfulness\": 1}' or helpfulness=1,verbosity=0)",
    )


def load_splits(args: argparse.Namespace, need_train: bool) -> tuple[Benchmark, Benchmark | None]:
    """The evaluated split (first --limit scenarios) and, when needed, the training split."""
    return load_typed_splits(args.benchmark, args.split, args.data, limit=args.limit,
                             train_split=args.train_split if need_train else None)


def add_llm_args(p: argparse.ArgumentParser) -> None:
    """The LLM judge's flags, one per :class:`LLMConfig` field."""
    g = p.add_argument_group("LLM scorers (model, endpoint, sampling, limits)")
    add_config_flags(g, LLMConfig, rename=LLM_RENAME, negative=LLM_NEGATIVE,
                     cli_defaults=LLM_CLI_DEFAULTS, metavars=LLM_METAVARS)


def add_reward_args(p: argparse.ArgumentParser) -> None:
    """The reward scorer's flags, one per :class:`RewardConfig` field (model and endpoint
    flags shared with the LLM judges)."""
    g = p.add_argument_group("reward-model scorer (--scorer reward)")
    add_config_flags(g, RewardConfig, rename=REWARD_RENAME,
                     metavars={"attributes": "ATTR=HEAD,...", "route": "PATH", "batch": "N"})


def add_llm_scorer_args(p: argparse.ArgumentParser) -> None:
    """The LLM and reward scorer flags of ``sweep``, so a command reading cached scores of a
    model computes the scorer identity itself."""
    add_llm_args(p)
    add_reward_args(p)


def llm_config(args: argparse.Namespace) -> LLMConfig:
    """The LLM judge settings the flags describe (a missing ``--model`` becomes "", refused
    with a clear error once a judge is built)."""
    samples = getattr(args, "samples", None)  # align and jury: --samples N reads N, default 1
    return config_from_args(LLMConfig, args, LLM_RENAME,
                            model=getattr(args, "model", None) or "",
                            samples=1 if samples is None else samples)


def reward_config(args: argparse.Namespace) -> RewardConfig:
    """The reward scorer settings the flags describe (``--reward-attributes`` is the config's
    ``attributes``, and so on)."""
    return config_from_args(RewardConfig, args, REWARD_RENAME,
                            model=getattr(args, "model", None) or "")


def scorer_splits(args: argparse.Namespace
                  ) -> tuple[Benchmark, Benchmark | None, LLMConfig | RewardConfig | None]:
    """(evaluated split, training split when ``--scorer`` reads one, the config of the flags
    when it names a model: an LLMConfig for an LLM judge, a RewardConfig for ``reward``; else
    None). With ``--scorer-id`` no training split."""
    config: LLMConfig | RewardConfig | None = None
    if args.scorer in LLM_SCORERS:
        config = llm_config(args)
    elif args.scorer == "reward" and not getattr(args, "scorer_id", None):
        config = reward_config(args)
    need = not getattr(args, "scorer_id", None) and api.needs_train(args.scorer, config)
    bench, train = load_splits(args, need_train=need)
    check_samples(bench, getattr(args, "samples", None))
    return bench, train, config


def score_args(args: argparse.Namespace, bench: Benchmark, train: Benchmark | None,
               config: LLMConfig | RewardConfig | None) -> api.Scores:
    """``pluralign.score`` of ``--scorer`` through the ``--cache`` (a partial summary goes to
    ``--out`` when LLM answers stay missing)."""
    return api.score(bench, args.scorer, train=train, cache=args.cache, config=config,
                     out=getattr(args, "out", None),
                     **scorer_options(args.scorer, seed=args.seed, value=args.value))


def cached_scores_args(args: argparse.Namespace) -> api.Scores:
    """The cached scores of ``--scorer-id``, or of the scorer ``--scorer`` and its flags
    describe (the identity ``sweep`` writes under; nothing is computed or sent)."""
    bench, train, config = scorer_splits(args)
    ident = args.scorer_id or api.scorer_identity(bench, args.scorer, train=train,
                                                  config=config,
                                                  **scorer_options(args.scorer, seed=args.seed,
                                                                   value=args.value))
    note_manifest(bench, train, scorer={"identity": ident, "name": args.scorer_id or args.scorer})
    return api.cached_scores(bench, ident, samples=args.samples, cache=args.cache)


def budget_arg(text: str) -> int:
    """argparse type of ``--memory-budget``: bad sizes are refused before any work."""
    try:
        return parse_memory_budget(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(
            str(e).splitlines()[0].removeprefix("field 'memory_budget': ")) from None


def add_realign_args(p: Any) -> None:
    """``--shards`` and ``--memory-budget`` for the commands that re-align."""
    p.add_argument("--shards", type=number(int, Range(1, MAX_SHARDS)), default=None,
                   help="re-align as N Ray tasks over blocks of targets (on a sweep already "
                        f"on Ray, automatic above {SHARD_THRESHOLD:,} responses x targets)")
    p.add_argument("--memory-budget", default=None, type=budget_arg,
                   help="memory one re-alignment may hold (512M, 2G, 25%%; default 1/8 of "
                        "RAM); beyond it targets and scenarios are processed in blocks")
