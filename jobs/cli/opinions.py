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

from pluralign.jobs.cli.args import add_llm_args, llm_config
from pluralign.jobs.cli.flags import add_config_flags, config_from_args, field_docs, number
from pluralign.jobs.configs import Range
from pluralign.jobs.opinions import LOGPROBS_K, OpinionsConfig, OpinionsResult, run_opinions
from pluralign.jobs.runtime import progress

SOURCES = ("file", "global_opinions", "opinionqa")
"""The fields naming the questions: exactly one is given."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("opinions", help="a model's answer distributions vs populations'",
                       description=__doc__)
    add_config_flags(p.add_mutually_exclusive_group(required=True), OpinionsConfig,
                     only=SOURCES)
    add_config_flags(p, OpinionsConfig, only=("group_by", "rotate_options"))
    p.add_argument("--logprobs", nargs="?", type=number(int, Range(1)), const=LOGPROBS_K,
                   default=None,
                   metavar="K", help=field_docs(OpinionsConfig)["logprobs"])
    add_config_flags(p, OpinionsConfig, skip=(*SOURCES, "group_by", "rotate_options"),
                     required=("out",))
    add_llm_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = run_opinions(config_from_args(OpinionsConfig, args), llm_config(args))
    how = (f"{result.samples} samples each" if result.top_logprobs is None
           else f"top-{result.top_logprobs} option-letter log-probabilities")
    print(f"\n{len(result.answered)} of {len(result.questions)} questions answered; {how} "
          f"(JS distance base 2; entropy bits)")
    _print_pairs(result)
    if result.refusal:
        print("refusal rate (refusal options such as 'Refused' are kept out of the "
              "distributions): " + ", ".join(f"{g} {r:.3f}" for g, r in result.refusal.items()))
    if result.skipped:
        print("skipped: " + ", ".join(f"{n:,} {why}" for why, n in result.skipped.items()))
    progress(f"wrote {result.out}/summary.json")
    return 0


def _print_pairs(result: OpinionsResult) -> None:
    print(f"{'model':<14}{'group':<12}{'questions':>10}{'JS':>8}{'JS shuffled':>13}"
          f"{'H model':>9}{'H group':>9}")
    for pr in result.report.pairs:
        print(f"{pr['model'][:13]:<14}{pr['group'][:11]:<12}{pr['n_questions']:>10}"
              f"{pr['js_distance']:>8.3f}{pr['js_shuffled']:>13.3f}{pr['model_entropy']:>9.3f}"
              f"{pr['group_entropy']:>9.3f}")
