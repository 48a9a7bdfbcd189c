"""The ``spica`` jobs: scenario banks, group-informed retrieval and in-context alignment
(Chen et al., SPICA).

``synth`` writes a synthetic bank with planted norms, ``fit`` per-group weights on the dev
split, ``retrieve`` and ``prompt`` show what a group's queries retrieve and the prompts built
from it, ``evaluate`` compares SPICA with similarity retrieval per group (with intervals) and
``generate`` asks an OpenAI-compatible endpoint for response-class answers to raw prompts, or
for aligned outputs, through a content-addressed cache. Banks: a Parquet file of ours,
``synthetic[:seed]``, or the SPICA authors' JSON layout. Formats: docs/spica.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from pluralign.actors.backends.api_client import APIClientConfig, OpenAIBackend
from pluralign.engine.errors import InputError
from pluralign.engine.run.scheduler import STDERR
from pluralign.engine.spica.bank import RatingKind, ScenarioBank
from pluralign.engine.spica.evaluate import GroupEvaluation
from pluralign.engine.spica.generate import (
    AlignedOutput,
    GenerationReport,
    aligned_outputs,
    grow_bank,
)
from pluralign.engine.spica.io import write_bank
from pluralign.engine.spica.prompts import SETUPS, AlignmentPrompt, build_prompt
from pluralign.engine.spica.retrieval import Retriever, Weights
from pluralign.engine.spica.synthetic_bank import SyntheticConfig, synthetic_bank
from pluralign.engine.store.generations import GenerationCache
from pluralign.jobs.api import load_spica_bank, spica_groups, spica_results, spica_retriever
from pluralign.jobs.interrupts import Interrupts
from pluralign.jobs.runtime import write_json_atomic, write_parquet_atomic
from pluralign.schemas.spica import DEFAULT_CLASSES, BankMeta, ResponseClass

__all__ = [
    "SpicaBankSource", "SpicaEvaluateConfig", "SpicaEvaluateResult", "SpicaFitConfig",
    "SpicaFitResult", "SpicaGenerateConfig", "SpicaGenerateResult", "SpicaPromptConfig",
    "SpicaPromptResult", "SpicaQueries", "SpicaRetrieveConfig", "SpicaRetrieveResult",
    "SpicaSynthConfig", "SpicaSynthResult", "load_weights", "run_spica_evaluate",
    "run_spica_fit", "run_spica_generate", "run_spica_prompt", "run_spica_retrieve",
    "run_spica_synth",
]

Similarity = Literal["tfidf", "embedding"]
SetupChoice = Literal["control", "P-I", "C-I", "P-R", "C-R", "all"]
"""A prompt setup (engine/spica/prompts.py), or every one."""
Names = str | tuple[str, ...]
"""Names as a tuple, or as one comma-separated text (as the command line gives them)."""


@dataclass(frozen=True, kw_only=True)
class SpicaBankSource:
    """Where the scenario bank comes from, and which of its splits is retrieved from."""

    bank: str | None = None
    """Bank Parquet file, or synthetic[:SEED] (or give the authors' layout files)."""
    spica_annotations: tuple[str, ...] = ()
    """Authors' layout: annotation JSON files, each [SPLIT=]FILE (SPLIT default train)."""
    spica_scenarios: tuple[str, ...] = ()
    """Authors' layout: scenario JSON files."""
    train_split: str = "train"
    """Split retrieved from."""

    def load(self) -> ScenarioBank:
        """The whole bank."""
        bank: ScenarioBank = load_spica_bank(self.bank, annotations=self.spica_annotations,
                                             scenarios=self.spica_scenarios)
        return bank


@dataclass(frozen=True, kw_only=True)
class SpicaQueries:
    """The queries retrieved for: given texts, or the prompts of a bank split."""

    query: tuple[str, ...] = ()
    """Query text (repeatable)."""
    split: str | None = None
    """Use the prompts of this bank split as queries."""
    limit: int | None = None
    """Only the first N queries."""

    def resolve(self, bank: ScenarioBank) -> list[tuple[str, str]]:
        """(id, text) of each query: ``q0``, ``q1``, ... for given texts, scenario ids for a
        split."""
        if self.query:
            out = [(f"q{i}", q) for i, q in enumerate(self.query)]
        elif self.split:
            sub = bank.select(self.split)
            out = list(zip(sub.ids, sub.prompts, strict=True))
        else:
            raise InputError("no queries", field="query",
                             hint="use `query=TEXT` or `split=NAME`")
        return out[: self.limit] if self.limit else out


def _names(names: Names | None) -> list[str] | None:
    if not names:
        return None
    return names.split(",") if isinstance(names, str) else list(names)


def load_weights(path: str | None) -> tuple[dict[str, Weights], dict[str, Any]]:
    """(weights by group, the file's header: bank, splits, similarity, rating); both empty
    when no file is named."""
    if not path:
        return {}, {}
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        ws = {g: Weights(**w) for g, w in raw["weights"].items()}
    except FileNotFoundError:
        raise InputError("no such weights file", file=path) from None
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"not a weights file ({e})", file=path,
                         hint="write one with `pluralign spica fit`") from None
    return ws, raw


def _fitted(source: SpicaBankSource, weights_file: str | None, similarity: Similarity = "tfidf",
            rating: RatingKind = "response"
            ) -> tuple[ScenarioBank, dict[str, Weights], Retriever]:
    """(bank, weights by group, retriever) for the jobs that use fitted weights; the rating
    kind the weights were fitted on wins over ``rating``."""
    bank = source.load()
    weights, head = load_weights(weights_file)
    retriever = spica_retriever(bank, train_split=source.train_split, similarity=similarity,
                                rating=head.get("rating", rating))
    return bank, weights, retriever


# ---- synth -------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class SpicaSynthConfig:
    """A synthetic bank with planted group norms, and the file to write it to."""

    seed: int = 0
    """Seed."""
    n_train: int = 360
    """Bank scenarios."""
    n_dev: int = 150
    """Dev queries."""
    n_test: int = 150
    """Test queries."""
    out: str
    """Parquet file to write."""


@dataclass(frozen=True)
class SpicaSynthResult:
    bank: ScenarioBank
    """The bank written."""
    path: Path
    """Its Parquet file."""


def run_spica_synth(config: SpicaSynthConfig) -> SpicaSynthResult:
    """Write a synthetic bank with planted group norms."""
    sb = synthetic_bank(SyntheticConfig(n_train=config.n_train, n_dev=config.n_dev,
                                        n_test=config.n_test, seed=config.seed))
    return SpicaSynthResult(sb.bank, write_bank(sb.bank, config.out))


# ---- fit ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class SpicaFitConfig:
    """Per-group weights fitted on the dev split, and the file they go to."""

    source: SpicaBankSource = field(default_factory=SpicaBankSource)
    """The bank."""
    similarity: Similarity = "tfidf"
    """Text similarity."""
    rating: RatingKind = "response"
    """Ratings that define norms and mismatch."""
    dev_split: str = "dev"
    """Split the weights are fitted on."""
    groups: Names | None = None
    """Comma-separated groups (default: all + ALL)."""
    out: str
    """Weights JSON file to write."""


@dataclass(frozen=True)
class SpicaFitResult:
    weights: dict[str, Weights]
    """Fitted weights by group."""
    path: Path
    """The weights JSON file."""


def run_spica_fit(config: SpicaFitConfig) -> SpicaFitResult:
    """Fit each group's weights on the dev split and write them with the bank's identity,
    the splits, the similarity and the rating kind."""
    bank = config.source.load()
    retriever = spica_retriever(bank, train_split=config.source.train_split,
                                similarity=config.similarity, rating=config.rating)
    weights = retriever.fit_all(bank.select(config.dev_split),
                                spica_groups(bank, _names(config.groups)))
    path = Path(config.out)
    write_json_atomic(path, {
        "bank": bank.identity, "train_split": config.source.train_split,
        "dev_split": config.dev_split, "similarity": retriever.similarity.identity,
        "rating": config.rating, "weights": {g: w.to_dict() for g, w in weights.items()},
    })
    return SpicaFitResult(weights, path)


# ---- retrieve ----------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class SpicaRetrieveConfig:
    """The top-k bank scenarios a group's queries retrieve, SPICA's and the baseline's."""

    source: SpicaBankSource = field(default_factory=SpicaBankSource)
    """The bank."""
    queries: SpicaQueries = field(default_factory=SpicaQueries)
    """The queries."""
    weights: str | None = None
    """Weights JSON (default: baseline only)."""
    group: str
    """Group (or ALL)."""
    k: int = 5
    """Scenarios per query."""


@dataclass(frozen=True)
class SpicaRetrieveResult:
    group: str
    """The group retrieved for."""
    weights: Weights | None
    """Its SPICA weights (None: the baseline only)."""
    queries: list[tuple[str, str]]
    """(id, text) of each query."""
    baseline: list[tuple[str, ...]]
    """Per query, the ids of the scenarios similarity alone ranks first."""
    spica: list[tuple[str, ...]] | None
    """Per query, those SPICA's weights rank first (None without weights)."""


def run_spica_retrieve(config: SpicaRetrieveConfig) -> SpicaRetrieveResult:
    """Retrieve the top ``k`` bank scenarios for each query, by similarity alone and, where
    the weights file has the group, by SPICA's group-informed distance."""
    bank, weights, retriever = _fitted(config.source, config.weights)
    queries = config.queries.resolve(bank)
    texts = [t for _, t in queries]
    ids = retriever.bank.ids
    base = retriever.retrieve(texts, config.group, config.k, None)
    w = weights.get(config.group)
    spica = retriever.retrieve(texts, config.group, config.k, w) if w else None
    return SpicaRetrieveResult(
        config.group, w, queries, [tuple(ids[i] for i in row) for row in base],
        None if spica is None else [tuple(ids[i] for i in row) for row in spica])


# ---- prompt ------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class SpicaPromptConfig:
    """The alignment prompts of queries for a group."""

    source: SpicaBankSource = field(default_factory=SpicaBankSource)
    """The bank."""
    queries: SpicaQueries = field(default_factory=SpicaQueries)
    """The queries."""
    weights: str | None = None
    """Weights JSON (default: similarity only)."""
    group: str
    """Group (or ALL)."""
    setup: SetupChoice = "C-R"
    """Prompt setup."""
    k: int = 3
    """Retrieved examples."""


@dataclass(frozen=True)
class SpicaPromptResult:
    group: str
    """The group the prompts align to."""
    prompts: list[tuple[str, str, AlignmentPrompt]]
    """(query id, setup, prompt) for each query, then each setup."""


def run_spica_prompt(config: SpicaPromptConfig) -> SpicaPromptResult:
    """Build each query's alignment prompt for the group in the setup (or every setup), from
    the examples SPICA (or similarity alone, without weights) retrieves."""
    bank, weights, retriever = _fitted(config.source, config.weights)
    queries = config.queries.resolve(bank)
    setups = SETUPS if config.setup == "all" else (config.setup,)
    idx = retriever.retrieve([t for _, t in queries], config.group, config.k,
                             weights.get(config.group))
    prompts = [(qid, setup, build_prompt(retriever.bank, text, config.group, setup, idx[qi]))
               for qi, (qid, text) in enumerate(queries) for setup in setups]
    return SpicaPromptResult(config.group, prompts)


# ---- evaluate ----------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class SpicaEvaluateConfig:
    """Retrieval error per group on held-out queries: SPICA against similarity alone."""

    source: SpicaBankSource = field(default_factory=SpicaBankSource)
    """The bank."""
    similarity: Similarity = "tfidf"
    """Text similarity."""
    rating: RatingKind = "response"
    """Ratings that define norms and mismatch."""
    weights: str | None = None
    """Weights JSON (default: fit on the dev split)."""
    dev_split: str = "dev"
    """Split to fit on when no weights are given."""
    test_split: str = "test"
    """Held-out split with ratings."""
    groups: Names | None = None
    """Comma-separated groups (default: all + ALL)."""
    k: int = 5
    """Scenarios per query."""
    bootstrap: int = 2000
    """Bootstrap resamples."""
    bootstrap_seed: int = 0
    """Bootstrap seed."""
    out: str | None = None
    """Write the table as JSON here."""


@dataclass(frozen=True)
class SpicaEvaluateResult:
    groups: list[GroupEvaluation]
    """One per group (``ALL`` last)."""
    path: Path | None
    """The JSON file written (None: none asked for)."""


def run_spica_evaluate(config: SpicaEvaluateConfig) -> SpicaEvaluateResult:
    """Each group's retrieval error over the top ``k`` on the test split, similarity alone
    against SPICA's weights (the file's, or fitted on the dev split), with bootstrap
    intervals; the table goes to ``config.out`` when given."""
    bank = config.source.load()
    weights, head = load_weights(config.weights)  # the rating they were fitted on wins
    results = spica_results(
        bank, k=config.k, bootstrap=config.bootstrap, seed=config.bootstrap_seed,
        groups=_names(config.groups), weights=weights, train_split=config.source.train_split,
        dev_split=config.dev_split, test_split=config.test_split,
        similarity=config.similarity, rating=head.get("rating", config.rating))
    path = None
    if config.out:
        path = Path(config.out)
        write_json_atomic(path, {"bank": bank.identity, "k": config.k, "groups": [
            {"group": e.group, "n_queries": e.n_queries,
             "baseline": vars(e.baseline), "spica": vars(e.spica), "gain": vars(e.gain),
             "weights": e.weights.to_dict()} for e in results]})
    return SpicaEvaluateResult(results, path)


# ---- generate ----------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class SpicaGenerateConfig:
    """Answers generated through an OpenAI-compatible endpoint: response-class answers that
    grow a bank from raw prompts, or aligned outputs for queries."""

    what: Literal["classes", "aligned"]
    """classes: grow a bank from raw prompts; aligned: aligned outputs."""
    source: SpicaBankSource = field(default_factory=SpicaBankSource)
    """aligned: the bank."""
    prompts: str | None = None
    """classes: JSONL of {id, prompt} or a text file, one prompt per line."""
    queries: SpicaQueries = field(default_factory=SpicaQueries)
    """aligned: the queries."""
    weights: str | None = None
    """aligned: weights JSON (SPICA retrieval)."""
    groups: Names | None = None
    """aligned: comma-separated groups."""
    setups: Names = "control,P-I,C-I,P-R,C-R"
    """aligned: setups."""
    k: int = 3
    """aligned: retrieved examples."""
    per_class: int = 3
    """classes: samples per class."""
    base_url: str = "https://api.openai.com/v1"
    """OpenAI-compatible endpoint root."""
    model: str
    """Model name."""
    model_id: str | None = None
    """Identity used in cache keys (default: the model name)."""
    api_key_env: str | None = "OPENAI_API_KEY"
    """Environment variable holding the API key ('' for none)."""
    cache: str | None = None
    """Generation cache folder."""
    out: str
    """Parquet file to write."""


@dataclass(frozen=True)
class SpicaGenerateResult:
    report: GenerationReport
    """Requests sent, answers from the cache, duplicates and failures."""
    outputs: list[AlignedOutput] | None
    """aligned: one per (query, group, setup); None for classes."""
    bank: ScenarioBank | None
    """classes: the bank grown; None for aligned."""
    path: Path
    """The Parquet file written."""


def _backend_factory(config: SpicaGenerateConfig) -> Callable[[], OpenAIBackend]:
    cfg = APIClientConfig(base_url=config.base_url, model=config.model,
                          api_key_env=config.api_key_env or None)
    return lambda: OpenAIBackend(cfg)


def read_prompts(path: str) -> list[tuple[str, str]]:
    """(id, prompt) of each line of a JSONL file of ``{id, prompt}`` objects or of a text file
    (one prompt a line, ids ``p00000``, ...); blank lines are skipped."""
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


def run_spica_generate(config: SpicaGenerateConfig) -> SpicaGenerateResult:
    """Generate through the endpoint, sending only what the cache lacks: ``classes`` writes
    the grown bank, ``aligned`` a table of one row per (query, group, setup)."""
    cache = GenerationCache(config.cache) if config.cache else None
    model = config.model_id or config.model
    factory = _backend_factory(config)
    path = Path(config.out)
    if config.what == "classes":
        if not config.prompts:
            raise InputError("generate classes needs `prompts=FILE`", field="prompts")
        meta = BankMeta("generated", tuple(ResponseClass(c, d) for c, d in DEFAULT_CLASSES))
        bank, report = grow_bank(meta, read_prompts(config.prompts), factory, model, cache,
                                 config.per_class, interrupts=Interrupts(STDERR))
        write_bank(bank, config.out)
        return SpicaGenerateResult(report, None, bank, path)
    bank, weights, retriever = _fitted(config.source, config.weights)
    setups = [s.strip() for s in _setups(config.setups) if s.strip()]
    rows, report = aligned_outputs(retriever, weights, config.queries.resolve(bank),
                                   spica_groups(bank, _names(config.groups)), setups, config.k,
                                   factory, model, cache, interrupts=Interrupts(STDERR))
    table = pa.table({k: [getattr(r, k) for r in rows] for k in
                      ("query", "group", "setup", "text", "error", "key")}
                     | {"retrieved": [list(r.retrieved) for r in rows]})
    write_parquet_atomic(path, table)  # carries the run manifest
    return SpicaGenerateResult(report, rows, None, path)


def _setups(setups: Names) -> Sequence[str]:
    return setups.split(",") if isinstance(setups, str) else setups
