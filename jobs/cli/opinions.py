"""``pluralign opinions``: distributional pluralism from a model (the pluralism roadmap,
Sorensen et al. 2024, §3.3, App. A).

Asks the model each multiple-choice survey question N times (``--samples``), takes the share of
answers per option as its distribution, and compares it with every population's by
Jensen–Shannon distance, entropy and the shuffled-label control of ``pluralign distribution``.
Answers are cached per (question, model settings, sample): a rerun sends nothing.

With ``--logprobs [K]`` (App. A) the model is asked once per question for the letter of its
answer, with the first token's K most likely alternatives; its distribution is the option
letters' probabilities, renormalised. Cached per (question, model settings), the mode and K in
the key. An endpoint that returns no log-probabilities is an error: use ``--samples`` there.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pluralign.jobs.cli.args import llm_config
from pluralign.jobs.runtime import progress, write_json_atomic, write_parquet_atomic


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("opinions", help="a model's answer distributions vs populations'",
                       description=__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="distribution file (JSON, as for pluralign distribution)")
    src.add_argument("--global-opinions", metavar="CSV", help="GlobalOpinionQA global_opinions.csv")
    src.add_argument("--opinionqa", metavar="DIR", help="an OpinionQA human_resp/<survey> folder")
    p.add_argument("--group-by", default=None, help="OpinionQA: demographic column for populations")
    p.add_argument("--rotate-options", action="store_true",
                   help="rotate the option order per sample (position-bias control)")
    p.add_argument("--logprobs", nargs="?", type=int, const=20, default=None, metavar="K",
                   help="distribution from the first token's top-K option-letter "
                        "log-probabilities (K default 20), one request per question, instead "
                        "of sampling")
    p.add_argument("--shuffles", type=int, default=100, help="shuffled-label permutations")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffles")
    p.add_argument("--cache", default=None, help="cache folder (default: $PLURALIGN_CACHE ...)")
    p.add_argument("--out", required=True, help="folder for summary.json and opinions.parquet")
    from pluralign.jobs.cli.args import add_llm_args

    add_llm_args(p)
    p.set_defaults(func=run)


def _questions(args: argparse.Namespace) -> list[Any]:
    from pluralign.engine.data.field_data import load_global_opinions, load_opinionqa
    from pluralign.engine.pluralism.distributional import load_distributions

    if args.file:
        qs = load_distributions(args.file)
    elif args.global_opinions:
        qs = load_global_opinions(args.global_opinions)
    else:
        qs = load_opinionqa(args.opinionqa, args.group_by)
    return qs[: args.limit] if args.limit else qs


def run(args: argparse.Namespace, backend: Any = None) -> int:
    from pluralign.engine.errors import InputError, PluralignError
    from pluralign.engine.judges.base import letters
    from pluralign.engine.pluralism.distributional import evaluate_distributions
    from pluralign.engine.pluralism.judges import SURVEY_BENCHMARK, SurveyJudge
    from pluralign.engine.pluralism.opinions import (
        answers_by_question,
        logprob_distribution,
        logprobs_by_question,
        with_distributions,
        with_model,
    )
    from pluralign.engine.run.backend import NO_LOGPROBS
    from pluralign.engine.store.files import check_output
    from pluralign.jobs.pluralism_runs import cache_store, run_judge, samples_of, settings

    check_output(args.out)
    if args.shuffles < 1:
        raise InputError("--shuffles must be at least 1", field="shuffles")
    k = args.logprobs
    if k is not None and k < 1:
        raise InputError("--logprobs K must be at least 1", field="logprobs")
    if k is not None and (args.rotate_options or (args.samples or 1) > 1):
        raise InputError("--logprobs asks once per question: drop --samples and "
                         "--rotate-options", field="logprobs")
    questions = _questions(args)
    config = llm_config(args)
    judge = SurveyJudge(questions, settings(config), rotate=args.rotate_options, logprobs=k)
    samples = samples_of(config)
    schedule = run_judge(judge, judge.items(samples), config, args.cache, backend)
    rows = cache_store(args.cache).read(SURVEY_BENCHMARK, judge.identity).to_pylist()
    keys = [judge.scenario_key(i) for i in range(len(questions))]
    label = f"{args.model}"
    if k is None:
        answered, missing = with_model(questions, keys, answers_by_question(rows, samples),
                                       label)
        how = f"{samples} samples each"
    else:
        tops = logprobs_by_question(rows)
        if not tops and any(NO_LOGPROBS in (r["error"] or "") for r in rows):
            raise PluralignError(f"{getattr(args, 'base_url', None) or args.backend}: "
                                 f"{NO_LOGPROBS}")
        dists = {key: logprob_distribution(tops[key], letters(len(q.options)))
                 for q, key in zip(questions, keys, strict=True) if key in tops}
        answered, missing = with_distributions(questions, keys, dists, label)
        how = f"top-{k} option-letter log-probabilities"
    report = evaluate_distributions(answered, n_shuffles=args.shuffles, seed=args.seed)
    print(f"\n{len(answered)} of {len(questions)} questions answered; {how} "
          f"(JS distance base 2; entropy bits)")
    print(f"{'model':<14}{'group':<12}{'questions':>10}{'JS':>8}{'JS shuffled':>13}"
          f"{'H model':>9}{'H group':>9}")
    for pr in report.pairs:
        print(f"{pr['model'][:13]:<14}{pr['group'][:11]:<12}{pr['n_questions']:>10}{pr['js_distance']:>8.3f}"
              f"{pr['js_shuffled']:>13.3f}{pr['model_entropy']:>9.3f}{pr['group_entropy']:>9.3f}")
    out = Path(args.out)
    if report.questions:
        write_parquet_atomic(out / "opinions.parquet", _table(report.questions, answered, label))
    write_json_atomic(out / "summary.json", {
        "model": label, "judge": judge.describe(),
        "mode": "samples" if k is None else "logprobs", "top_logprobs": k,
        "samples": samples if k is None else None,
        "questions": len(questions), "answered": len(answered), "unanswered": missing,
        "shuffles": args.shuffles, "seed": args.seed, "pairs": report.pairs,
        "scoring": schedule.as_dict()})
    progress(f"wrote {out}/summary.json")
    return 0


def _table(rows: list[dict[str, Any]], questions: list[Any], model: str) -> Any:
    from pluralign.engine.align.results import rows_table

    dist = {q.id: [float(x) for x in q.models[model]] for q in questions}
    return rows_table([{**r, "model_distribution": dist[r["question"]]} for r in rows],
                      "opinions")
