"""Reward-model scorer: scores from a reward (pooling) model's output heads, cached per item.

Adams et al., "Steerable Pluralism: Pluralistic Alignment via Few-Shot Comparative Regression"
(Section 4.2, the Reward Model Baseline) score each question and response with a reward model
and pick the highest-scoring response, whatever the target. A reward model reads the
conversation (prompt, then one response) and returns one value per output head; nothing is
generated. How heads map to attributes is stated by the user as ``ATTRIBUTE=HEAD`` pairs
(``attributes="helpfulness=0,verbosity=1"`` or ``{"helpfulness": 0, "verbosity": 1}``); a scalar reward model has one head, 0,
mapped to the attribute it is taken to measure. A head's value is written as the attribute's
score unchanged, unless ``squash`` is set, which maps it through the logistic function onto
(0, 1) (re-alignment compares predicted scores with targets on [0, 1]).

Rows are the same score-cache rows every scorer writes (one per (scenario, response,
attribute), sample 0: a reward model is deterministic). The identity covers the model, its
revision, the backend, the head mapping, the input rendering and ``squash``, so a rerun with
the same settings sends nothing and a different model never reads another's rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.store.cache import ScoreCache, ScoreRow, score_key, scorer_identity

RENDER_SCHEME = "prompt-response-v1"
"""How (prompt, response) becomes the model input (part of the identity)."""

RewardBackend = Callable[[Sequence[str]], Awaitable[Sequence[Sequence[float] | str]]]
"""Given input texts, one result per text: the head values, or an error message."""


def parse_reward_attributes(spec: str, attributes: Sequence[str]) -> dict[str, int]:
    """``"a=0,b=1"`` to ``{"a": 0, "b": 1}``; every attribute must be the benchmark's."""
    out: dict[str, int] = {}
    for pos, part in enumerate(p.strip() for p in spec.split(",") if p.strip()):
        name, sep, head = part.partition("=")
        name = name.strip()
        if not sep or not head.strip().isdigit():
            raise InputError(f"expected ATTRIBUTE=HEAD, got {part!r}", record=pos,
                             field="attributes")
        if name not in attributes:
            raise InputError(f"unknown attribute {name!r} (benchmark has {list(attributes)})",
                             record=pos, field="attributes")
        if name in out:
            raise InputError(f"attribute {name!r} mapped twice", record=pos,
                             field="attributes")
        out[name] = int(head)
    if not out:
        raise InputError("no ATTRIBUTE=HEAD pair given", field="attributes")
    return out


def check_reward_heads(heads: Mapping[str, object], attributes: Sequence[str]) -> dict[str, int]:
    """A head mapping given as a mapping (``attributes`` as a dict rather than its text),
    checked as :func:`parse_reward_attributes` checks the text: known attributes, heads that
    are non-negative integers, at least one pair."""
    out: dict[str, int] = {}
    for name, head in heads.items():
        if name not in attributes:
            raise InputError(f"unknown attribute {name!r} (benchmark has {list(attributes)})",
                             record=name, field="attributes")
        if isinstance(head, bool) or not isinstance(head, int) or head < 0:
            raise InputError(f"head of {name!r} must be a non-negative integer, got {head!r}",
                             record=name, field="attributes")
        out[str(name)] = int(head)
    if not out:
        raise InputError("no ATTRIBUTE=HEAD pair given", field="attributes")
    return out


@dataclass(frozen=True)
class RewardSettings:
    """Everything that changes a reward model's scores (hashed into the identity)."""

    model: str
    """Model name as the backend knows it."""
    heads: Mapping[str, int]
    """Output head per attribute scored."""
    backend: str = "vllm"
    """``vllm`` (in-process), ``vllm-server`` (its /pooling or /classify route) or ``http``."""
    revision: str | None = None
    """Model revision (commit or tag), when known."""
    squash: bool = False
    """Map each head value through the logistic function onto (0, 1)."""


class RewardScorer:
    """Turns a benchmark's (scenario, response) pairs into reward-model inputs and cache rows."""

    name = "reward"

    def __init__(self, bench: Benchmark, settings: RewardSettings) -> None:
        for attr in settings.heads:
            if attr not in bench.attributes:
                raise InputError(f"unknown attribute {attr!r}", field="attributes")
        self.bench = bench
        self.settings = settings
        self.identity = scorer_identity(self.name, self.identity_settings())

    def identity_settings(self) -> dict[str, object]:
        s = self.settings
        return {"model": s.model, "revision": s.revision, "backend": s.backend,
                "heads": dict(sorted(s.heads.items())), "render": RENDER_SCHEME,
                "squash": s.squash}

    def describe(self) -> dict[str, object]:
        """Settings for the run manifest."""
        return {"identity": self.identity, "name": self.name, "kind": "scores",
                **self.identity_settings()}

    def text(self, scenario: int, response: int) -> str:
        """The model input: the prompt, a blank line, the response."""
        sc = self.bench.scenarios[scenario]
        return f"{sc.prompt}\n\n{sc.responses[response]}"

    def key(self, scenario: int, response: int, attribute: str) -> str:
        sc = self.bench.scenarios[scenario]
        return score_key(self.bench.identity, sc.id, response, attribute, self.identity, 0)

    def pending(self, done: set[str]) -> list[tuple[int, int]]:
        """(scenario, response) pairs with any mapped attribute not yet scored."""
        out = []
        for i, sc in enumerate(self.bench.scenarios):
            for r in range(len(sc.responses)):
                if any(self.key(i, r, a) not in done for a in self.settings.heads):
                    out.append((i, r))
        return out

    def rows(self, scenario: int, response: int,
             result: Sequence[float] | str) -> list[ScoreRow]:
        """One row per mapped attribute: the head's value, or a failure naming the problem."""
        sc = self.bench.scenarios[scenario]
        out: list[ScoreRow] = []
        for attr, head in self.settings.heads.items():
            score: float | None = None
            error: str | None = None
            if isinstance(result, str):
                error = result
            elif head >= len(result):
                error = f"model returned {len(result)} head(s); head {head} is not one"
            else:
                value = float(result[head])
                if not math.isfinite(value):
                    error = f"head {head} is not finite: {value!r}"
                else:
                    score = 1.0 / (1.0 + math.exp(-value)) if self.settings.squash else value
            meta = json.dumps({"head": head, "raw": None if error else float(result[head])})
            out.append({
                "key": self.key(scenario, response, attr), "benchmark": self.bench.identity,
                "scenario": sc.id, "response": response, "attribute": attr,
                "scorer": self.identity, "sample": 0, "score": score, "reasoning": None,
                "error": error, "meta": meta,
            })
        return out


async def score_rewards(scorer: RewardScorer, cache: ScoreCache, backend: RewardBackend,
                        *, batch: int = 32,
                        stopped: Callable[[], bool] = lambda: False) -> dict[str, int]:
    """Score every pending pair through ``backend`` in batches, one cache part per batch;
    once ``stopped()`` is true (an interrupt) no further batch is sent, the one in flight is
    still written.

    A batch the backend fails on as a whole is written as failures (a rerun retries them); one
    bad item never stops the others. Returns counts: ``sent``, ``scored``, ``failed``.
    """
    done = cache.completed_keys(scorer.bench.identity, scorer.identity)
    todo = scorer.pending(done)
    counts = {"sent": 0, "scored": 0, "failed": 0}
    for start in range(0, len(todo), batch):
        if stopped():
            break
        chunk = todo[start:start + batch]
        texts = [scorer.text(i, r) for i, r in chunk]
        try:
            results: Sequence[Sequence[float] | str] = await backend(texts)
            if len(results) != len(chunk):
                raise ValueError(f"backend returned {len(results)} results for {len(chunk)}")
        except Exception as exc:  # recorded as failures, retried on rerun
            results = [f"{type(exc).__name__}: {exc}"] * len(chunk)
        counts["sent"] += len(chunk)
        rows = [row for (i, r), res in zip(chunk, results, strict=True)
                for row in scorer.rows(i, r, res)]
        counts["scored"] += sum(row["error"] is None for row in rows)
        counts["failed"] += sum(row["error"] is not None for row in rows)
        cache.append(rows)
    return counts
