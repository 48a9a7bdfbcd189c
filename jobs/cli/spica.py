"""``pluralign spica``: scenario banks, group-informed retrieval and in-context alignment.

Verbs: ``synth`` (write a synthetic bank with planted norms), ``fit`` (per-group weights on the
dev split), ``retrieve``, ``prompt``, ``evaluate`` (SPICA vs similarity retrieval error per
group, with intervals) and ``generate`` (response-class answers for raw prompts, or aligned
outputs, through an OpenAI-compatible backend with a content-addressed cache).
Banks: a Parquet file of ours, ``synthetic[:seed]``, or the SPICA authors' JSON layout via
``--spica-annotations``/``--spica-scenarios``. Formats: docs/spica.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

SETUP_CHOICES = ("control", "P-I", "C-I", "P-R", "C-R")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("spica", help="SPICA scenario banks, retrieval and alignment prompts",
                       description=__doc__)
    verbs = p.add_subparsers(dest="spica_verb", metavar="VERB", required=True)

    s = verbs.add_parser("synth", help="write a synthetic bank with planted group norms")
    _ints(s, seed=(0, "seed (default 0)"), train=(360, "bank scenarios (default 360)"),
          dev=(150, "dev queries (default 150)"), test=(150, "test queries (default 150)"))
    s.add_argument("--out", required=True, help="Parquet file to write")
    s.set_defaults(func=run_synth)

    f = verbs.add_parser("fit", help="fit per-group weights on the dev split")
    _bank_args(f)
    _retrieval_args(f)
    f.add_argument("--dev-split", default="dev", help="split the weights are fitted on")
    f.add_argument("--groups", default=None, help="comma-separated groups (default: all + ALL)")
    f.add_argument("--out", required=True, help="weights JSON file to write")
    f.set_defaults(func=run_fit)

    r = verbs.add_parser("retrieve", help="top-k bank scenarios for queries, SPICA and baseline")
    _group_query_args(r, "weights JSON (default: baseline only)")
    _ints(r, k=(5, "scenarios per query (default 5)"))
    r.set_defaults(func=run_retrieve)

    q = verbs.add_parser("prompt", help="print the alignment prompt of a query for a group")
    _group_query_args(q, "weights JSON (default: similarity only)")
    q.add_argument("--setup", default="C-R", choices=(*SETUP_CHOICES, "all"),
                   help="prompt setup (default C-R)")
    _ints(q, k=(3, "retrieved examples (default 3)"))
    q.set_defaults(func=run_prompt)

    e = verbs.add_parser("evaluate", help="retrieval error per group: SPICA vs similarity")
    _bank_args(e)
    _retrieval_args(e)
    e.add_argument("--weights", default=None, help="weights JSON (default: fit on --dev-split)")
    e.add_argument("--dev-split", default="dev", help="split to fit on when no --weights")
    e.add_argument("--test-split", default="test", help="held-out split with ratings")
    e.add_argument("--groups", default=None, help="comma-separated groups (default: all + ALL)")
    _ints(e, k=(5, "scenarios per query (default 5)"), bootstrap=(2000, "bootstrap resamples"),
          bootstrap_seed=(0, "bootstrap seed"))
    e.add_argument("--out", default=None, help="write the table as JSON here")
    e.set_defaults(func=run_evaluate)

    g = verbs.add_parser("generate", help="generate class responses or aligned outputs")
    g.add_argument("what", choices=("classes", "aligned"),
                   help="classes: grow a bank from raw prompts; aligned: aligned outputs")
    _bank_args(g)
    g.add_argument("--prompts", default=None,
                   help="classes: JSONL of {id, prompt} or a text file, one prompt per line")
    _query_args(g)
    g.add_argument("--weights", default=None, help="aligned: weights JSON (SPICA retrieval)")
    g.add_argument("--groups", default=None, help="aligned: comma-separated groups")
    g.add_argument("--setups", default="control,P-I,C-I,P-R,C-R", help="aligned: setups")
    _ints(g, k=(3, "aligned: retrieved examples (default 3)"),
          per_class=(3, "classes: samples per class"))
    g.add_argument("--base-url", default="https://api.openai.com/v1",
                   help="OpenAI-compatible endpoint root")
    g.add_argument("--model", required=True, help="model name")
    g.add_argument("--model-id", default=None,
                   help="identity used in cache keys (default: the model name)")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key ('' for none)")
    g.add_argument("--cache", default=None, help="generation cache folder")
    g.add_argument("--out", required=True, help="Parquet file to write")
    g.set_defaults(func=run_generate)


def _ints(p: argparse.ArgumentParser, **flags: tuple[int, str]) -> None:
    """Integer options, each ``name=(default, help)``: ``bootstrap_seed`` is --bootstrap-seed."""
    for name, (default, help_text) in flags.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=default, help=help_text)


def _bank_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bank", default=None,
                   help="bank Parquet file, or synthetic[:SEED] (or give the --spica-* files)")
    p.add_argument("--spica-annotations", nargs="+", default=None, metavar="[SPLIT=]FILE",
                   help="authors' layout: annotation JSON files (SPLIT= prefix, default train)")
    p.add_argument("--spica-scenarios", nargs="+", default=None, metavar="FILE",
                   help="authors' layout: scenario JSON files")
    p.add_argument("--train-split", default="train", help="split retrieved from (default train)")


def _group_query_args(p: argparse.ArgumentParser, weights_help: str) -> None:
    """The bank, the queries, the weights file and the one group they are retrieved for."""
    _bank_args(p)
    _query_args(p)
    p.add_argument("--weights", default=None, help=weights_help)
    p.add_argument("--group", required=True, help="group (or ALL)")


def _retrieval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--similarity", default="tfidf", choices=("tfidf", "embedding"),
                   help="text similarity (default tfidf)")
    p.add_argument("--rating", default="response", choices=("response", "strategy"),
                   help="ratings that define norms and mismatch (default response)")


def _query_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--query", action="append", default=None, help="query text (repeatable)")
    p.add_argument("--split", default=None, help="use the prompts of this bank split as queries")
    p.add_argument("--limit", type=int, default=None, help="only the first N queries")


# -- loading ------------------------------------------------------------------------------
def load_bank_arg(args: argparse.Namespace) -> Any:
    """The whole bank named by --bank or the --spica-* files."""
    from pluralign.jobs.api import load_spica_bank

    return load_spica_bank(args.bank, annotations=args.spica_annotations,
                           scenarios=args.spica_scenarios)


def _queries(args: argparse.Namespace, bank: Any) -> list[tuple[str, str]]:
    from pluralign.engine.errors import InputError

    if args.query:
        out = [(f"q{i}", q) for i, q in enumerate(args.query)]
    elif args.split:
        sub = bank.select(args.split)
        out = list(zip(sub.ids, sub.prompts, strict=True))
    else:
        raise InputError("no queries", field="query", hint="use --query TEXT or --split NAME")
    return out[: args.limit] if args.limit else out


def _load_weights(path: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(weights by group, file header) — empty when no file."""
    if not path:
        return {}, {}
    from pluralign.engine.errors import InputError
    from pluralign.engine.spica.retrieval import Weights

    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        ws = {g: Weights(**w) for g, w in raw["weights"].items()}
    except FileNotFoundError:
        raise InputError("no such weights file", file=path) from None
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"not a weights file ({e})", file=path,
                         hint="write one with `pluralign spica fit`") from None
    return ws, raw


def _groups(arg: str | None, bank: Any) -> list[str]:
    """``--groups`` (comma-separated) checked against the bank; default every group + ALL."""
    from pluralign.jobs.api import spica_groups

    return spica_groups(bank, arg.split(",") if arg else None)


# -- tables -------------------------------------------------------------------------------
def print_table(headers: list[str], rows: list[list[Any]], out: Any = None) -> None:
    """Left-aligned text table on stdout."""
    stream = out or sys.stdout
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), file=stream)
    print("  ".join("-" * w for w in widths), file=stream)
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)), file=stream)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3f}"
    return str(v)


# -- verbs --------------------------------------------------------------------------------
def run_synth(args: argparse.Namespace) -> int:
    from pluralign.engine.spica.io import write_bank
    from pluralign.engine.spica.synthetic_bank import SyntheticConfig, synthetic_bank

    sb = synthetic_bank(SyntheticConfig(n_train=args.train, n_dev=args.dev, n_test=args.test,
                                        seed=args.seed))
    write_bank(sb.bank, args.out)
    print(f"wrote {sb.bank.n_scenarios} scenarios ({', '.join(sb.bank.splits)}), groups "
          f"{', '.join(sb.bank.groups)} to {args.out}")
    return 0


def _retriever(args: argparse.Namespace, bank: Any) -> Any:
    from pluralign.jobs.api import spica_retriever

    return spica_retriever(bank, train_split=args.train_split,
                           similarity=getattr(args, "similarity", "tfidf"),
                           rating=getattr(args, "rating", "response"))


def _fitted(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Any]:
    """(bank, weights by group, retriever) for the commands that use fitted weights; the
    rating kind the weights were fitted on wins over --rating."""
    bank = load_bank_arg(args)
    weights, head = _load_weights(args.weights)
    if head:
        args.rating = head.get("rating", getattr(args, "rating", "response"))
    return bank, weights, _retriever(args, bank)


def _weight_rows(weights: dict[str, Any]) -> list[list[Any]]:
    return [[g, w.w_d, w.w_s, w.w_c, w.c, w.n_pairs, w.r2] for g, w in weights.items()]


def run_fit(args: argparse.Namespace) -> int:
    from pluralign.jobs.runtime import write_json_atomic

    bank = load_bank_arg(args)
    retriever = _retriever(args, bank)
    weights = retriever.fit_all(bank.select(args.dev_split), _groups(args.groups, bank))
    print_table(["group", "w_d", "w_s", "w_c", "c", "pairs", "r2"], _weight_rows(weights))
    write_json_atomic(Path(args.out), {
        "bank": bank.identity, "train_split": args.train_split, "dev_split": args.dev_split,
        "similarity": retriever.similarity.identity, "rating": args.rating,
        "weights": {g: w.to_dict() for g, w in weights.items()},
    })
    return 0


def run_retrieve(args: argparse.Namespace) -> int:
    bank, weights, retriever = _fitted(args)
    queries = _queries(args, bank)
    texts = [t for _, t in queries]
    base = retriever.retrieve(texts, args.group, args.k, None)
    w = weights.get(args.group)
    spica = retriever.retrieve(texts, args.group, args.k, w) if w else None
    tr = retriever.bank
    rows = []
    for qi, (qid, _) in enumerate(queries):
        for rank in range(base.shape[1]):
            rows.append([qid, rank + 1, tr.ids[base[qi, rank]],
                         tr.ids[spica[qi, rank]] if spica is not None else "-"])
    print(f"group {args.group}: " + ("SPICA weights " + json.dumps(w.to_dict()) if w
                                     else "no weights: baseline only"))
    print_table(["query", "rank", "similarity", "spica"], rows)
    return 0


def run_prompt(args: argparse.Namespace) -> int:
    from pluralign.engine.spica.prompts import SETUPS, build_prompt

    bank, weights, retriever = _fitted(args)
    queries = _queries(args, bank)
    setups = SETUPS if args.setup == "all" else (args.setup,)
    idx = retriever.retrieve([t for _, t in queries], args.group, args.k,
                             weights.get(args.group))
    for qi, (qid, text) in enumerate(queries):
        for setup in setups:
            p = build_prompt(retriever.bank, text, args.group, setup, idx[qi])
            print(f"===== query {qid} | group {args.group} | setup {setup} =====")
            for m in p.messages:
                print(f"--- {m.role} ---\n{m.content}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from pluralign.jobs.api import spica_results
    from pluralign.jobs.runtime import write_json_atomic

    bank = load_bank_arg(args)
    weights, head = _load_weights(args.weights)  # the rating they were fitted on wins
    results = spica_results(
        bank, k=args.k, bootstrap=args.bootstrap, seed=args.bootstrap_seed,
        groups=args.groups.split(",") if args.groups else None, weights=weights,
        train_split=args.train_split, dev_split=args.dev_split, test_split=args.test_split,
        similarity=args.similarity, rating=head.get("rating", args.rating))
    rows = [[e.group, e.n_queries, str(e.baseline), str(e.spica), str(e.gain),
             e.weights.w_d, e.weights.w_s, e.weights.w_c] for e in results]
    print(f"retrieval error (mean pairwise L over top-{args.k}; 95% bootstrap intervals)")
    print_table(["group", "queries", "similarity", "spica", "gain", "w_d", "w_s", "w_c"], rows)
    if args.out:
        write_json_atomic(Path(args.out), {"bank": bank.identity, "k": args.k, "groups": [
            {"group": e.group, "n_queries": e.n_queries,
             "baseline": vars(e.baseline), "spica": vars(e.spica), "gain": vars(e.gain),
             "weights": e.weights.to_dict()} for e in results]})
    return 0


def _backend_factory(args: argparse.Namespace) -> Any:
    from pluralign.actors.backends.api_client import APIClientConfig, OpenAIBackend

    cfg = APIClientConfig(base_url=args.base_url, model=args.model,
                          api_key_env=args.api_key_env or None)
    return lambda: OpenAIBackend(cfg)


def _raw_prompts(path: str) -> list[tuple[str, str]]:
    from pluralign.engine.errors import InputError

    text = Path(path).read_text(encoding="utf-8")
    out = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
                out.append((str(obj["id"]), str(obj["prompt"])))
            except (ValueError, KeyError) as e:
                raise InputError(f"expected {{id, prompt}} ({e})", file=path,
                                 record=f"line {i + 1}") from None
        else:
            out.append((f"p{len(out):05d}", line.strip()))
    if not out:
        raise InputError("no prompts", file=path)
    return out


def run_generate(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from pluralign.engine.errors import InputError
    from pluralign.engine.spica.generate import aligned_outputs, grow_bank
    from pluralign.engine.spica.io import write_bank
    from pluralign.engine.store.generations import GenerationCache
    from pluralign.jobs.runtime import write_parquet_atomic
    from pluralign.schemas.spica import DEFAULT_CLASSES, BankMeta, ResponseClass

    cache = GenerationCache(args.cache) if args.cache else None
    model = args.model_id or args.model
    factory = _backend_factory(args)
    if args.what == "classes":
        if not args.prompts:
            raise InputError("generate classes needs --prompts FILE", field="prompts")
        meta = BankMeta("generated", tuple(ResponseClass(c, d) for c, d in DEFAULT_CLASSES))
        bank, report = grow_bank(meta, _raw_prompts(args.prompts), factory, model, cache,
                                 args.per_class)
        write_bank(bank, args.out)
    else:
        bank, weights, retriever = _fitted(args)
        setups = [s.strip() for s in args.setups.split(",") if s.strip()]
        rows, report = aligned_outputs(retriever, weights, _queries(args, bank),
                                       _groups(args.groups, bank), setups, args.k, factory,
                                       model, cache)
        table = pa.table({k: [getattr(r, k) for r in rows] for k in
                          ("query", "group", "setup", "text", "error", "key")}
                         | {"retrieved": [list(r.retrieved) for r in rows]})
        write_parquet_atomic(Path(args.out), table)  # carries the run manifest
        per: dict[tuple[str, str], list[int]] = {}
        for r in rows:
            per.setdefault((r.group, r.setup), [0, 0])[0 if r.text is not None else 1] += 1
        print_table(["group", "setup", "ok", "failed"],
                    [[g, s, v[0], v[1]] for (g, s), v in per.items()])
    print(f"sent {report.sent} requests, {report.cached} answers from cache, "
          f"{report.duplicates} duplicates, {report.failed} failed; wrote {args.out}")
    return 0
