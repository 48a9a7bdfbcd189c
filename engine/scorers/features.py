"""Cheap text features of prompts and responses for the embedded ridge scorer.

Length and shape features per response, their scenario means (what a whole scenario looks
like) and their deviations from those means (how a response differs from its siblings: the
part that decides which response of a scenario is picked).
"""

from __future__ import annotations

import math
import re

import numpy as np

from pluralign.engine.data.benchmark import Benchmark

_WORD = re.compile(r"[A-Za-z0-9']+")
_DIGIT = re.compile(r"\d")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
_BULLET = re.compile(r"^\s*[-*•]\s+", re.M)
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+", re.M)
_HEADING = re.compile(r"^\s*(?:#{1,6}\s+\S|[^\n]{1,60}:\s*$)", re.M)
_REFUSAL = re.compile(
    r"\b(?:i'?m sorry|i apologi[sz]e|i cannot|i can'?t|as an ai|language model|i am unable|"
    r"i'?m unable|i do not have|i don'?t have|i don'?t know)\b",
    re.I,
)

LENGTH_FEATURES = (
    "log_chars", "log_words", "log_lines", "log_sentences", "log_ratio_to_prompt", "length_rank",
)
"""How long a response is, absolutely, against its prompt and against its siblings."""
SHAPE_FEATURES = (
    "log_bullets", "log_numbered", "log_code_blocks", "log_headings", "mean_word_length",
    "log_words_per_sentence", "type_token_ratio", "trigram_repetition", "ends_cleanly",
    "refusal", "prompt_overlap", "digit_share", "question_share",
)
"""How a response is laid out and worded."""
PROMPT_FEATURES = ("log_prompt_chars", "log_prompt_lines")
"""What the prompt looks like (used for the scenario level only)."""
CURVE_BASES = ("log_chars", "log_words")
"""Features whose squares and cubes (standardized on the training split) form the ``curve``
group: length does not act linearly (very short and very long answers stand apart)."""
FEATURE_GROUPS = {"length": LENGTH_FEATURES, "shape": SHAPE_FEATURES, "curve": ()}
"""Named groups the ridge scorer chooses among (``curve`` is built by the model's design)."""
FEATURE_NAMES = LENGTH_FEATURES + SHAPE_FEATURES


def response_features(prompt: str, response: str) -> list[float]:
    """The values of :data:`FEATURE_NAMES` for one response, ``length_rank`` left at 0."""
    words = _WORD.findall(response)
    n_words = len(words)
    lower = [w.lower() for w in words]
    sentences = max(1, len(_SENTENCE_END.findall(response)))
    lines = [ln for ln in response.split("\n") if ln.strip()]
    prompt_words = {w.lower() for w in _WORD.findall(prompt) if len(w) > 3}
    trigrams = list(zip(lower, lower[1:], lower[2:], strict=False))
    chars = len(response)
    length = [
        math.log1p(chars), math.log1p(n_words), math.log1p(len(lines)), math.log1p(sentences),
        math.log1p(chars) - math.log1p(len(prompt)), 0.0,
    ]
    shape = [
        math.log1p(len(_BULLET.findall(response))),
        math.log1p(len(_NUMBERED.findall(response))),
        math.log1p(response.count("```") // 2),
        math.log1p(len(_HEADING.findall(response))),
        sum(map(len, words)) / max(1, n_words),
        math.log1p(n_words / sentences),
        len(set(lower)) / max(1, n_words),
        1.0 - len(set(trigrams)) / max(1, len(trigrams)),
        1.0 if response.rstrip()[-1:] in ".!?)\"'`*:" else 0.0,
        1.0 if _REFUSAL.search(response) else 0.0,
        len(prompt_words & {w for w in lower if len(w) > 3}) / max(1, len(prompt_words)),
        len(_DIGIT.findall(response)) / max(1, chars),
        response.count("?") / sentences,
    ]
    return length + shape


def feature_matrix(bench: Benchmark) -> np.ndarray:
    """float64 (N, F): :data:`FEATURE_NAMES` of every flat response."""
    rows = [response_features(sc.prompt, r) for sc in bench.scenarios for r in sc.responses]
    x = np.array(rows, dtype=np.float64).reshape(-1, len(FEATURE_NAMES))
    x[:, LENGTH_FEATURES.index("length_rank")] = _length_rank(bench, x[:, 0])
    return x


def _length_rank(bench: Benchmark, log_chars: np.ndarray) -> np.ndarray:
    # Rank of the length among the scenario's responses, scaled to [0, 1]; ties share a rank.
    out = np.zeros(len(log_chars))
    for s in range(bench.n_scenarios):
        a, b = int(bench.offsets[s]), int(bench.offsets[s + 1])
        seg = log_chars[a:b]
        out[a:b] = (seg[:, None] > seg[None, :]).sum(axis=1) / max(1, b - a - 1)
    return out


def prompt_matrix(bench: Benchmark) -> np.ndarray:
    """float64 (S, P): :data:`PROMPT_FEATURES` of every scenario."""
    rows = [[math.log1p(len(sc.prompt)), math.log1p(sc.prompt.count("\n") + 1)]
            for sc in bench.scenarios]
    return np.array(rows, dtype=np.float64).reshape(-1, len(PROMPT_FEATURES))


def scenario_means(bench: Benchmark, x: np.ndarray) -> np.ndarray:
    """(S, ...) mean of ``x``'s rows over each scenario's responses."""
    counts = np.diff(bench.offsets).astype(np.float64)
    sums = np.add.reduceat(x, bench.offsets[:-1], axis=0)
    return np.asarray(sums / counts.reshape((-1,) + (1,) * (x.ndim - 1)))


def within(bench: Benchmark, x: np.ndarray) -> np.ndarray:
    """``x`` minus its scenario mean: each response against its siblings."""
    return np.asarray(x - scenario_means(bench, x)[bench.scenario_of])


def curve_columns(groups: tuple[str, ...]) -> np.ndarray:
    """Columns whose powers the ``curve`` group adds (needs the ``length`` group)."""
    if "curve" not in groups:
        return np.zeros(0, dtype=np.int64)
    return np.array([FEATURE_NAMES.index(n) for n in CURVE_BASES], dtype=np.int64)


def columns(groups: tuple[str, ...]) -> np.ndarray:
    """Column indices into :data:`FEATURE_NAMES` of the named feature groups."""
    names = [n for g in groups for n in FEATURE_GROUPS[g]]
    return np.array([FEATURE_NAMES.index(n) for n in names], dtype=np.int64)
