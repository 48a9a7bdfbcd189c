"""Pieces every command shares: benchmark, scorer and target-set arguments turned into the
typed arguments of the Python API (:mod:`pluralign.jobs.api`), the cache location, the one writer of
report files (atomic, with the run manifest) and progress lines on stderr."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pluralign.engine.align.results import finite_or_none
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.targets import TargetSet
from pluralign.engine.errors import InputError

if TYPE_CHECKING:
    from pluralign.jobs.configs import LLMConfig, RewardConfig

__all__ = ["finite_or_none"]  # re-exported: commands format figures with it

DEFAULT_SETS = ("all", "sampled", "high", "low")
TARGET_SET_NAMES = (*DEFAULT_SETS, "random-sampled")
"""Every named target set; ``random-sampled`` is generated (never the published sampled set)."""
LLM_SCORERS = ("comparative-regression", "regression", "prompt-aligned", "unaligned")
CHOICE_SCORERS = ("prompt-aligned", "unaligned")
"""Judges that pick a response per (scenario, target) instead of scoring attributes."""
MODEL_SCORERS = (*LLM_SCORERS, "reward")
"""Scorers that call a model (LLM judges, the reward model): commands that only read scores
compute their identity from the flags and never send anything."""


def add_benchmark_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--benchmark", default="helpsteer2",
                   help="helpsteer2, mic, synthetic[:S=..,R=..,A=..,L=..,seed=..] or a JSON file")
    p.add_argument("--data", default=None,
                   help="data folder (default: $PLURALIGN_DATA, then the user data dir)")
    p.add_argument("--split", default="eval", help="split to evaluate (default: eval)")
    p.add_argument("--train-split", default="train",
                   help="split scorers learn or draw examples from (default: train)")
    p.add_argument("--limit", type=int, default=None, help="only the first N scenarios")
    p.add_argument("--cache", default=None,
                   help="score cache folder (default: $PLURALIGN_CACHE or the user cache dir)")


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
        p.add_argument("--samples", type=int, default=None,
                       help="with cached scores: average the first N samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the random scorer")
    p.add_argument("--value", type=float, default=0.5, help="value of the constant scorer")


def scorer_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword options of the model-free scorer ``--scorer`` names (--seed, --value)."""
    options = {"random": {"seed": args.seed}, "constant": {"value": args.value}}
    return options.get(args.scorer.partition(":")[0], {})


def make_scorer(args: argparse.Namespace) -> Any:
    """The model-free scorer named by ``--scorer``, with its own options (--seed, --value)."""
    from pluralign.engine.scorers import get_scorer

    return get_scorer(args.scorer, **scorer_options(args))


def add_target_args(p: argparse.ArgumentParser, default: Sequence[str] | None) -> None:
    p.add_argument(
        "--targets", nargs="+", default=list(default) if default else None, metavar="SET",
        help="all, sampled, high, low, target JSON files or folders, or inline targets "
             "('{\"helpfulness\": 1}' or helpfulness=1,verbosity=0)",
    )


def progress(message: str) -> None:
    """One status line on stderr (stdout stays for results)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cache_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("PLURALIGN_CACHE"):
        return Path(os.environ["PLURALIGN_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "pluralign" / "scores"


def load_splits(args: argparse.Namespace, need_train: bool) -> tuple[Benchmark, Benchmark | None]:
    """The evaluated split (first --limit scenarios) and, when needed, the training split."""
    from pluralign.engine.data.sources import load_benchmark

    bench = load_benchmark(args.benchmark, args.split, args.data)
    if args.limit is not None:
        if args.limit < 1:
            raise InputError("--limit must be at least 1", field="limit")
        bench = bench.subset(args.limit)
    train = None
    if need_train:
        if args.train_split == args.split:
            raise InputError("the training split must differ from the evaluated split",
                             field="train-split", hint="evaluation splits are never for tuning")
        train = load_benchmark(args.benchmark, args.train_split, args.data)
    return bench, train


def resolve_target_sets(
    specs: Sequence[str], bench: Benchmark, data_dir: str | None
) -> list[TargetSet]:
    """Each --targets entry as a named set: published sets where the data has them."""
    from pluralign.engine.data.sources import published_locations, published_targets
    from pluralign.engine.data.targets import (
        GENERATED_SAMPLED,
        all_targets,
        high_target,
        load_target_files,
        low_target,
        parse_inline,
        sampled_targets,
    )

    out: list[TargetSet] = []
    inline: list[TargetSet] = []
    for spec in specs:
        if spec == "all":
            out.append(all_targets(bench.attributes, bench.levels))
        elif spec == GENERATED_SAMPLED:
            out.append(sampled_targets(bench.attributes, bench.levels))
        elif spec == "sampled":
            found = published_targets(bench.name, spec, data_dir)
            if found is None and list(specs) == list(DEFAULT_SETS):
                progress(f"no published sampled set for {bench.name}: the default sets use "
                         f"{GENERATED_SAMPLED} (generated) instead")
                found = sampled_targets(bench.attributes, bench.levels)
            elif found is None:
                raise InputError(
                    f"no published sampled target set for {bench.name} (looked in "
                    f"{published_locations(bench.name, spec, data_dir)})", field="targets",
                    hint=f"put the published files there, pass --data DIR, or ask for "
                         f"{GENERATED_SAMPLED} (generated, named as such)")
            out.append(found)
        elif spec in ("high", "low"):
            # Defined sets (every attribute at 1, at 0): generating them substitutes nothing.
            found = published_targets(bench.name, spec, data_dir)
            out.append(found if found is not None else
                       (high_target if spec == "high" else low_target)(bench.attributes))
        elif spec.lstrip().startswith(("{", "[")) or ("=" in spec and not Path(spec).exists()):
            inline.append(parse_inline(spec, bench.attributes))
        else:
            out.append(load_target_files([spec], bench.attributes))
    if inline:
        from pluralign.engine.data.targets import concat

        out.append(concat(inline, "inline") if len(inline) > 1 else inline[0])
    return out


def write_json_atomic(path: Path, data: Any) -> None:
    """Write a JSON report; a report object gets the run manifest under ``manifest``."""
    from pluralign.engine.store.files import write_json
    from pluralign.engine.store.manifest import current

    m = current()
    if m is not None and isinstance(data, dict):
        data = {**data, "manifest": m.as_dict()}
    write_json(path, data)


def write_parquet_atomic(path: Path, table: Any) -> None:
    """Write a Parquet table with the run manifest in its schema metadata."""
    from pluralign.engine.store.files import write_parquet
    from pluralign.engine.store.manifest import current, with_manifest

    write_parquet(with_manifest(table, current()), path)


def note_manifest(bench: Benchmark | None = None, train: Benchmark | None = None,
                  scorer: dict[str, Any] | None = None,
                  counts: dict[str, Any] | None = None) -> None:
    """Record the benchmark (with its data files' checksums), the decoded scorer settings and
    the counts in the run manifest that result files carry."""
    from pluralign.engine.store.manifest import current

    m = current()
    if m is None:
        return
    if bench is not None:
        files = [b.source for b in (bench, train) if b is not None and b.source]
        m.note_benchmark(bench.identity, bench.split, bench.n_scenarios, files)
        if train is not None:
            m.benchmark["train_split"] = train.split
    if scorer is not None:
        m.note_scorer(scorer)
    if counts is not None:
        m.note_counts(counts)
    m.hosts = _ray_hosts()


def _ray_hosts() -> int:
    """Ray nodes alive when Ray is running in this process, else 1."""
    ray = sys.modules.get("ray")
    try:
        if ray is not None and ray.is_initialized():
            return max(1, sum(1 for n in ray.nodes() if n.get("Alive")))
    except Exception:  # a failing status call must not fail the report
        return 1
    return 1


def add_llm_scorer_args(p: argparse.ArgumentParser) -> None:
    """The LLM and reward scorer flags of ``sweep`` (model, backend, sampling, few-shot,
    reward heads ...), so a command reading cached scores of a model computes the scorer
    identity itself."""
    try:
        from pluralign.jobs.llm_scoring import add_backend_args
    except ImportError:  # the distributed extra is not installed
        return
    add_backend_args(p)
    from pluralign.jobs.reward_scoring import add_reward_args

    add_reward_args(p)


def scorer_splits(args: argparse.Namespace
                  ) -> tuple[Benchmark, Benchmark | None, LLMConfig | RewardConfig | None]:
    """(evaluated split, training split when ``--scorer`` reads one, the config of the flags
    when it names a model: an LLMConfig for an LLM judge, a RewardConfig for ``reward``; else
    None). With ``--scorer-id`` no training split."""
    from pluralign.jobs import api
    from pluralign.jobs.configs import LLMConfig, RewardConfig

    config: LLMConfig | RewardConfig | None = None
    if args.scorer in LLM_SCORERS:
        config = LLMConfig.from_args(args)
    elif args.scorer == "reward" and not getattr(args, "scorer_id", None):
        config = RewardConfig.from_args(args)
    need = not getattr(args, "scorer_id", None) and api.needs_train(args.scorer, config)
    bench, train = load_splits(args, need_train=need)
    return bench, train, config


def score_args(args: argparse.Namespace, bench: Benchmark, train: Benchmark | None,
               config: LLMConfig | RewardConfig | None) -> Any:
    """``pluralign.score`` of ``--scorer`` through the ``--cache`` (a partial summary goes to
    ``--out`` when LLM answers stay missing)."""
    from pluralign.jobs import api

    return api.score(bench, args.scorer, train=train, cache=args.cache, config=config,
                     out=getattr(args, "out", None), **scorer_options(args))


def cached_scores_args(args: argparse.Namespace) -> Any:
    """The cached scores of ``--scorer-id``, or of the scorer ``--scorer`` and its flags
    describe (the identity ``sweep`` writes under; nothing is computed or sent)."""
    from pluralign.jobs import api

    bench, train, config = scorer_splits(args)
    ident = args.scorer_id or api.scorer_identity(bench, args.scorer, train=train,
                                                  config=config, **scorer_options(args))
    note_manifest(bench, train, scorer={"identity": ident, "name": args.scorer_id or args.scorer})
    return api.cached_scores(bench, ident, samples=args.samples, cache=args.cache)
