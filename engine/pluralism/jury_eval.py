"""Scenario × juror × group evaluation from cached scores: utilities, accuracy, welfare w_α,
threshold shares and bootstrap intervals per group, and welfare-optimal response selection.

Jurors sharing a target are aligned once, and scenarios are taken in blocks so the working
tables (block × distinct targets) stay within a memory budget. Per juror and scenario the
chosen response follows the choice rule exactly (:mod:`engine.choice_rule`: the alignment
function of Adams et al., "Steerable Pluralism: Pluralistic Alignment via Few-Shot Comparative
Regression", §4.1; the loop oracle's own functions, compiled here), and its *closeness* is
1 − d/√k with d its label distance to the juror's target and √k the largest distance possible
in [0, 1]^k for a target of k attributes. The utility the welfare and threshold use is that closeness (``utility="distance"``) or the
correct/incorrect indicator. The closeness is not the published weighted score, which divides
by the largest distance among each scenario's own responses
(:attr:`pluralign.engine.align.realign.AlignResult.weighted`). Jurors with the empty target
have no defined closeness: they are left out of every figure and counted in ``n_excluded``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

import numpy as np
from numba import njit, prange

from pluralign.engine.align.align_loop import target_scale
from pluralign.engine.align.choice_rule import (
    PRED_TIE,
    first_within,
    first_within_sqrt,
    label_verdict,
)
from pluralign.engine.align.realign import check_predictions
from pluralign.engine.data.benchmark import Benchmark
from pluralign.engine.data.targets import TargetSet
from pluralign.engine.errors import InputError
from pluralign.engine.pluralism.juries import ALL, Jury
from pluralign.engine.pluralism.welfare import DEFAULT_ALPHAS, WelfareState, alpha_name
from pluralign.engine.run.progress import bar

Utility = Literal["distance", "indicator"]

CHOICE_RULE_DIGEST = "bde0f2034490d8f3"
"""First 16 hex of the SHA-256 of ``engine/align/choice_rule.py`` that the cached kernels of this
file were compiled with. numba keys a cached kernel on its own file's content only, yet
compiles :mod:`engine.choice_rule`'s functions into it; this line changes with that file
(``tests/engine/test_choice_rule.py`` checks it), so its edits renew this file's caches."""


@dataclass(frozen=True)
class JuryConfig:
    """What to compute for a jury."""

    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    """Welfare inequality aversions α ≥ 0 (``math.inf`` for the minimum)."""
    tau: float = 0.5
    """Threshold τ of the threshold share: the weighted share of jurors with utility > τ."""
    utility: Utility = "distance"
    """Utility the welfare and threshold use: ``distance`` (the closeness 1 − d/√k) or ``indicator``
    (1 when the chosen response is label-closest for the juror, else 0; a scenario where every
    response ties on labels counts 1, as every response is then label-closest)."""
    n_bootstrap: int = 1000
    """Bootstrap resamples of the scenarios for the confidence intervals (0: none)."""
    confidence: float = 0.95
    """Two-sided level of the percentile intervals."""
    seed: int = 0
    """Seed of the bootstrap."""
    memory_mb: float = 64.0
    """Budget of the per-block tables (scenarios × distinct juror targets): bounds memory."""

    def __post_init__(self) -> None:
        if not self.alphas or any(math.isnan(a) or a < 0 for a in self.alphas):
            raise InputError(f"alphas must be numbers >= 0, got {self.alphas}", field="alpha")
        if self.utility not in ("distance", "indicator"):
            raise InputError(f"utility must be 'distance' or 'indicator', not {self.utility!r}",
                             field="utility")
        if not 0 < self.confidence < 1:
            raise InputError(f"confidence must be in (0, 1), got {self.confidence}",
                             field="confidence")
        if self.n_bootstrap < 0:
            raise InputError(f"n_bootstrap must be >= 0, got {self.n_bootstrap}",
                             field="n_bootstrap")
        if not self.memory_mb > 0:
            raise InputError(f"memory_mb must be > 0, got {self.memory_mb}", field="memory_mb")


# ---- compiled per-juror loops ----------------------------------------------------------------

@njit(parallel=True, cache=True)
def _juror_outcomes(pred, units, offsets, s0, tv, tu, div, k, scale, tie,  # type: ignore[no-untyped-def]
                    chosen, correct, close):
    """For scenarios s0 + i (rows i of the outputs) and every target t: chosen response,
    correct (1, 0, or -1 when every response ties on labels) and the chosen response's
    closeness max(0, 1 - d/sqrt(k)) with d its label distance (NaN for the empty target).

    Sums run over attributes in ascending order, skipping those a target does not name, as
    :func:`engine.choice_rule.add_squares` does, so they are bit-identical to it; the choice
    and the label verdict are :mod:`engine.choice_rule`'s own functions, compiled here.
    Targets come sorted: target t repeats t-1's partial sums up to attribute div[t] and only
    the rest is added again.
    """
    n_a = tv.shape[1]
    for i in prange(chosen.shape[0]):
        r0 = offsets[s0 + i]
        n_r = offsets[s0 + i + 1] - r0
        p = pred[r0:r0 + n_r].T.copy()
        u = units[r0:r0 + n_r].T.copy()
        d = np.zeros((n_a + 1, n_r))
        lab = np.zeros((n_a + 1, n_r), dtype=np.int64)
        for t in range(k.size):
            for a in range(div[t], n_a):
                v = tv[t, a]
                if math.isnan(v):
                    d[a + 1] = d[a]
                    lab[a + 1] = lab[a]
                    continue
                w = tu[t, a]
                for r in range(n_r):
                    diff = p[a, r] - v
                    d[a + 1, r] = d[a, r] + diff * diff
                    di = u[a, r] - w
                    lab[a + 1, r] = lab[a, r] + di * di
            ch = first_within_sqrt(d[n_a], n_r, tie)
            sel = lab[n_a, ch]
            chosen[i, t] = ch
            correct[i, t] = label_verdict(lab[n_a], n_r, ch)
            # At the largest distance, sqrt(k * scale^2) / scale / sqrt(k) may round above 1.
            close[i, t] = max(0.0, 1.0 - math.sqrt(sel) / scale / math.sqrt(k[t])) if k[t] > 0 \
                else math.nan


@njit(parallel=True, cache=True)
def _response_utilities(scores, r0, tv, k, scale, out):  # type: ignore[no-untyped-def]
    """out[i, t] = max(0, 1 - (d / scale) / sqrt(k)): the closeness of flat response r0 + i to
    every target t (scores outside [0, 1] or rounding at the largest distance would go below 0)."""
    for i in prange(out.shape[0]):
        for t in range(k.size):
            total = 0.0
            for a in range(tv.shape[1]):
                v = tv[t, a]
                if not math.isnan(v):
                    diff = scores[r0 + i, a] - v
                    total += diff * diff
            out[i, t] = max(0.0, 1.0 - math.sqrt(total) / scale / math.sqrt(k[t])) if k[t] > 0 \
                else math.nan


@dataclass(frozen=True, eq=False)
class Compact:
    """Targets (T, A) prepared for the compiled loops."""

    values: np.ndarray
    """float64 (T, A): target values, NaN where not named."""
    units: np.ndarray
    """int64 (T, A): the values in grid units (0 where not named)."""
    div: np.ndarray
    """int64 (T,): first attribute where target t differs from t-1 (0 for the first)."""
    k: np.ndarray
    """int64 (T,): how many attributes each target names."""

    @classmethod
    def of(cls, targets: np.ndarray, scale: int) -> Compact:
        tv = np.ascontiguousarray(targets, dtype=np.float64)
        n_t, n_a = tv.shape
        keyed = np.where(np.isnan(tv), -1.0, tv)
        differs = np.ones((n_t, n_a + 1), dtype=bool)
        differs[1:, :n_a] = keyed[1:] != keyed[:-1]
        div = np.argmax(differs, axis=1).astype(np.int64)
        div[:1] = 0
        units = np.round(np.nan_to_num(tv, nan=0.0) * scale).astype(np.int64)
        k = (~np.isnan(tv)).sum(axis=1).astype(np.int64)
        return cls(tv, units, div, k)


# ---- inputs shared by evaluation and selection ---------------------------------------------

@dataclass(frozen=True, eq=False)
class _Prepared:
    bench: Benchmark
    pred: np.ndarray
    units: np.ndarray  # (N, A) labels in grid units, int64
    scale: int
    targets: Compact  # distinct non-empty juror targets (U of them)
    weights: np.ndarray  # (U, G) juror weight per distinct target and group
    inverse: np.ndarray  # (J,) index into targets per juror, -1 for empty-target jurors
    names: tuple[str, ...]  # groups, then ALL

    @property
    def n_targets(self) -> int:
        return int(self.targets.k.size)

    def columns(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """Distinct targets of group g and their weights."""
        cols = np.flatnonzero(self.weights[:, g] > 0)
        return cols, np.ascontiguousarray(self.weights[cols, g])

    def blocks(self, n_rows: int, bytes_per_cell: int, budget_mb: float) -> Iterator[slice]:
        """Row blocks whose (rows x distinct targets) tables fit in ``budget_mb``."""
        step = max(1, int(budget_mb * 2**20) // max(1, self.n_targets * bytes_per_cell))
        for lo in range(0, n_rows, step):
            yield slice(lo, min(lo + step, n_rows))


def _prepare(bench: Benchmark, predictions: np.ndarray, jury: Jury) -> _Prepared:
    if jury.attributes != bench.attributes:
        raise InputError(f"the jury is over {jury.attributes}, the benchmark over "
                         f"{bench.attributes}", file=jury.source or None)
    if int(np.diff(bench.offsets).max()) > 127:
        raise InputError("a scenario has more than 127 responses", file=bench.source or None)
    pred = check_predictions(bench, predictions)
    uniq, inverse = jury.unique_targets()
    weights = jury.group_weights(inverse, len(uniq))
    keep = weights[:, -1] > 0
    remap = np.cumsum(keep) - 1
    inv = np.where(jury.empty, -1, remap[inverse])
    scale = _scale(bench, uniq.values, jury.source)
    units = np.round(bench.labels * scale).astype(np.int64)
    return _Prepared(bench, pred, units, scale, Compact.of(uniq.values[keep], scale),
                     weights[keep, :-1], inv, (*jury.group_names, ALL))


def _scale(bench: Benchmark, targets: np.ndarray, source: str = "") -> int:
    try:
        return target_scale(bench, TargetSet("t", bench.attributes, targets))
    except ValueError as e:
        raise InputError(f"target values are not on a decimal grid: {e}",
                         file=source or None, field="target",
                         hint="write values with at most 6 decimals") from None


def juror_outcomes(bench: Benchmark, predictions: np.ndarray, targets: np.ndarray,
                   tie: float = PRED_TIE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For targets (T, A): chosen response (S, T) int8, correct (S, T) int8 (−1 where every
    response ties on labels) and the chosen response's closeness 1 − d/√k (S, T)."""
    tv = np.asarray(targets, dtype=np.float64).reshape(-1, len(bench.attributes))
    scale = _scale(bench, tv)
    units = np.round(bench.labels * scale).astype(np.int64)
    return _outcomes(check_predictions(bench, predictions), units, bench.offsets,
                     Compact.of(tv, scale), scale, tie, slice(0, bench.n_scenarios))


def choose(bench: Benchmark, predictions: np.ndarray, targets: np.ndarray,
           tie: float = PRED_TIE) -> np.ndarray:
    """int64 (S, T): the chosen response (:mod:`engine.choice_rule`) per scenario for any
    targets (T, A), on the level grid or not (labels are not consulted)."""
    tv = np.asarray(targets, dtype=np.float64).reshape(-1, len(bench.attributes))
    chosen, _, _ = _outcomes(check_predictions(bench, predictions),
                             np.zeros(bench.labels.shape, dtype=np.int64), bench.offsets,
                             Compact.of(tv, 1), 1, tie, slice(0, bench.n_scenarios))
    return chosen.astype(np.int64)


def _outcomes(pred: np.ndarray, units: np.ndarray, offsets: np.ndarray, targets: Compact,
              scale: int, tie: float, rows: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_s, n_t = rows.stop - rows.start, targets.k.size
    chosen = np.zeros((n_s, n_t), dtype=np.int8)
    correct = np.zeros((n_s, n_t), dtype=np.int8)
    close = np.zeros((n_s, n_t), dtype=np.float64)
    _juror_outcomes(pred, units, offsets, rows.start, targets.values, targets.units,
                    targets.div, targets.k, float(scale), tie, chosen, correct, close)
    return chosen, correct, close


# ---- evaluation -------------------------------------------------------------------------------

@dataclass(frozen=True)
class JuryResult:
    """Per group (last row: the whole jury, ``ALL``) figures, with bootstrap intervals."""

    config: JuryConfig
    names: tuple[str, ...]
    """Group names, then ``ALL``."""
    n_jurors: np.ndarray
    """int64 (G+1,): jurors with a defined closeness."""
    n_excluded: np.ndarray
    """int64 (G+1,): jurors with the empty target (closeness undefined, left out)."""
    weight: np.ndarray
    """float64 (G+1,): total weight of the counted jurors."""
    accuracy: np.ndarray
    """float64 (G+1,): weighted mean over jurors of their accuracy (%, as the steerable-pluralism
    paper's alignment score, §5.1)."""
    per_scenario: np.ndarray
    """float64 (S, G+1, M): per scenario the metrics named by ``metrics``."""
    means: np.ndarray
    """float64 (G+1, M): their means over scenarios."""
    ci: np.ndarray
    """float64 (G+1, M, 2): percentile bootstrap interval of the means over scenarios."""
    juror_closeness: np.ndarray
    """float64 (J,): each juror's mean closeness over scenarios (NaN when empty)."""
    juror_accuracy: np.ndarray
    """float64 (J,): each juror's accuracy (%; NaN when undefined)."""
    metrics: tuple[str, ...] = field(default=())
    """``closeness`` (mean closeness over jurors), ``threshold`` (share of jurors whose
    utility is above τ), ``welfare_a{α}`` (w_α of the utilities)."""

    def gaps(self) -> dict[str, GroupGap]:
        """Per metric, the best- and worst-served group (ALL left out) and their difference
        (``utility`` repeats ``closeness`` under its former name while callers move)."""
        out: dict[str, GroupGap] = {}
        table = np.column_stack([self.accuracy, self.means])[:-1]
        for m, name in enumerate(("accuracy", *self.metrics)):
            col = table[:, m]
            if np.all(np.isnan(col)):
                continue
            hi, lo = int(np.nanargmax(col)), int(np.nanargmin(col))
            out[name] = {"best": self.names[hi], "worst": self.names[lo],
                         "gap": float(col[hi] - col[lo])}
        if "closeness" in out:
            out[_FORMER_CLOSENESS] = out["closeness"]
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per group (then ALL); NaN becomes None. The closeness columns
        are repeated under their former name ``utility`` (``utility_lo``, ``utility_hi``) while
        callers move."""
        rows = []
        for g, name in enumerate(self.names):
            row: dict[str, Any] = {
                "group": name, "n_jurors": int(self.n_jurors[g]),
                "n_excluded": int(self.n_excluded[g]), "weight": float(self.weight[g]),
                "accuracy": _num(self.accuracy[g]),
            }
            for m, metric in enumerate(self.metrics):
                row[metric] = _num(self.means[g, m])
                row[f"{metric}_lo"] = _num(self.ci[g, m, 0])
                row[f"{metric}_hi"] = _num(self.ci[g, m, 1])
            if "closeness" in self.metrics:
                for end in ("", "_lo", "_hi"):
                    row[_FORMER_CLOSENESS + end] = row["closeness" + end]
            rows.append(row)
        return rows


class GroupGap(TypedDict):
    """The best- and worst-served group on one metric, and their difference."""

    best: str
    worst: str
    gap: float


_FORMER_CLOSENESS = "utility"
"""What the ``closeness`` metric was called (it is the mean closeness whatever the utility)."""


def _num(x: float) -> float | None:
    return None if math.isnan(float(x)) else float(x)


def metric_names(alphas: tuple[float, ...]) -> tuple[str, ...]:
    """Names of the per-scenario metrics, in the order of ``JuryResult.means``' last axis."""
    return ("closeness", "threshold", *(f"welfare_a{alpha_name(a)}" for a in alphas))


def _group_welfare(u: np.ndarray, prep: _Prepared, alphas: tuple[float, ...]) -> np.ndarray:
    """(n_alphas, R, G+1): w_α per row for every group, then the whole jury.

    The jury's state is the merge of the groups' (sums are linear in the weights), so no
    juror is visited twice even when targets are shared between groups.
    """
    states = [WelfareState.of(u, w, alphas, cols=c)
              for c, w in (prep.columns(g) for g in range(prep.weights.shape[1]))]
    whole = states[0]
    for st in states[1:]:
        whole = whole.merge(st)
    return np.stack([st.result() for st in (*states, whole)], axis=-1)


def _block_figures(wu: np.ndarray, du: np.ndarray, prep: _Prepared,
                   cfg: JuryConfig) -> np.ndarray:
    """(R, G+1, M) per row: mean closeness ``du``, share of utilities ``wu`` above τ, w_α of
    ``wu`` per α."""
    w = np.column_stack([prep.weights, prep.weights.sum(axis=1)])
    with np.errstate(invalid="ignore", divide="ignore"):
        total = w.sum(axis=0)
        closeness = du @ w / total
        above = (wu > cfg.tau).astype(np.float64) @ w / total
    welfare = _group_welfare(wu, prep, cfg.alphas)
    return np.concatenate([closeness[:, :, None], above[:, :, None],
                           np.moveaxis(welfare, 0, -1)], axis=-1)


def evaluate_jury(bench: Benchmark, predictions: np.ndarray, jury: Jury,
                  config: JuryConfig | None = None) -> JuryResult:
    """Accuracy, closeness, threshold share and w_α per group and for the whole jury.

    Welfare is taken per scenario over the jurors (w(x, y) in the pluralism roadmap, §4.3), then averaged
    over scenarios; intervals resample scenarios.
    """
    cfg = config or JuryConfig()
    prep = _prepare(bench, predictions, jury)
    n_s, n_t = bench.n_scenarios, prep.n_targets
    per_scenario = np.full((n_s, len(prep.names), 2 + len(cfg.alphas)), np.nan)
    counted, correct_n, close_sum = np.zeros(n_t), np.zeros(n_t), np.zeros(n_t)
    blocks = list(prep.blocks(n_s, 26, cfg.memory_mb))
    # One step per scenario block, and the bootstrap (resampling all figures) as the last.
    with bar(len(blocks) + 1, "jury", unit="step") as b:
        for rows in blocks:
            _, correct, close = _outcomes(prep.pred, prep.units, bench.offsets, prep.targets,
                                          prep.scale, PRED_TIE, rows)
            counted += (correct >= 0).sum(axis=0)
            correct_n += (correct == 1).sum(axis=0)
            close_sum += close.sum(axis=0)
            wu = close if cfg.utility == "distance" else (correct != 0).astype(np.float64)
            per_scenario[rows] = _block_figures(wu, close, prep, cfg)
            b.update(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            t_acc = np.where(counted > 0, 100.0 * correct_n / counted, np.nan)
        b.set_postfix_str("bootstrap")
        result = _result(cfg, prep, jury, per_scenario, close_sum / n_s, t_acc)
        b.update(1)
    return result


def _result(cfg: JuryConfig, prep: _Prepared, jury: Jury, per_scenario: np.ndarray,
            t_close: np.ndarray, t_acc: np.ndarray) -> JuryResult:
    empty = jury.empty
    member = [jury.group_of == g for g in range(jury.n_groups)] + [np.ones_like(empty)]
    n_jurors = np.array([int((~empty & m).sum()) for m in member], dtype=np.int64)
    n_excl = np.array([int((empty & m).sum()) for m in member], dtype=np.int64)
    w = np.column_stack([prep.weights, prep.weights.sum(axis=1)])
    ok = ~np.isnan(t_acc)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = (np.nan_to_num(t_acc)[ok] @ w[ok]) / w[ok].sum(axis=0)
        means = per_scenario.mean(axis=0)
    # inverse is -1 for empty-target jurors: it then picks the appended NaN.
    j_close = np.append(t_close, np.nan)[prep.inverse]
    j_acc = np.append(t_acc, np.nan)[prep.inverse]
    ci = bootstrap_ci(per_scenario, cfg.n_bootstrap, cfg.confidence, cfg.seed)
    return JuryResult(cfg, prep.names, n_jurors, n_excl, w.sum(axis=0), accuracy,
                      per_scenario, means, ci, j_close, j_acc, metric_names(cfg.alphas))


def bootstrap_ci(per_scenario: np.ndarray, n_boot: int, confidence: float,
                 seed: int) -> np.ndarray:
    """Percentile interval of the mean over scenarios (axis 0), resampling scenarios with
    replacement: shape ``per_scenario.shape[1:] + (2,)``; NaN when ``n_boot`` is 0 or the
    figure is undefined."""
    s = per_scenario.shape[0]
    flat = per_scenario.reshape(s, -1)
    out = np.full((flat.shape[1], 2), np.nan)
    if n_boot > 0 and s > 0:
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, s, size=(n_boot, s)) + (np.arange(n_boot) * s)[:, None]
        counts = np.bincount(draws.ravel(), minlength=n_boot * s).reshape(n_boot, s)
        boots = counts.astype(np.float64) @ np.nan_to_num(flat, nan=0.0) / s
        lo, hi = (1 - confidence) / 2, 1 - (1 - confidence) / 2
        out = np.quantile(boots, [lo, hi], axis=0).T
        out[np.isnan(flat).any(axis=0)] = np.nan
    return out.reshape((*per_scenario.shape[1:], 2))


# ---- welfare-optimal selection ---------------------------------------------------------------

@dataclass(frozen=True)
class SelectionResult:
    """Per group (then ALL) and α: the true welfare reached by three ways of choosing."""

    alphas: tuple[float, ...]
    names: tuple[str, ...]
    optimal: np.ndarray
    """int64 (G+1, n_alphas, S): response maximising w_α of the PREDICTED utilities."""
    collective: np.ndarray
    """int64 (G+1, S): response chosen for the group's mean target (the collective choice)."""
    achieved: np.ndarray
    """float64 (G+1, n_alphas, S): true w_α (from labels) of the welfare-optimal choice."""
    oracle: np.ndarray
    """float64 (G+1, n_alphas, S): the best true w_α any response reaches (ground truth)."""
    achieved_collective: np.ndarray
    """float64 (G+1, n_alphas, S): true w_α of the collective choice."""
    tol: float = 1e-9
    """A choice 'hits' the optimum when its true welfare is within this of it."""

    def rows(self) -> list[dict[str, Any]]:
        """Per group and α: mean true welfare of each choice and how often it is optimal."""
        rows = []
        for g, name in enumerate(self.names):
            for k, a in enumerate(self.alphas):
                opt = self.oracle[g, k]
                ach, col = self.achieved[g, k], self.achieved_collective[g, k]
                defined = not np.all(np.isnan(opt))  # a group of empty targets has no welfare
                rows.append({
                    "group": name, "alpha": alpha_name(a),
                    "oracle": _num(np.mean(opt)), "welfare_optimal": _num(np.mean(ach)),
                    "collective": _num(np.mean(col)),
                    "optimal_hit": _num(np.mean(ach >= opt - self.tol)) if defined else None,
                    "collective_hit": _num(np.mean(col >= opt - self.tol)) if defined else None,
                })
        return rows


def best_within(values: np.ndarray, offsets: np.ndarray, tie: float) -> np.ndarray:
    """Per scenario (the last axis holds flat responses) the lowest response index whose value
    is within ``tie`` of the scenario's maximum; 0 where every value is NaN.

    This is :func:`engine.choice_rule.first_within` on the negated values (negation is exact,
    so "within tie of the maximum" is "within tie of the minimum of the negatives").
    """
    v = np.asarray(values, dtype=np.float64)
    flat = np.ascontiguousarray(v.reshape(-1, v.shape[-1]))
    out = np.zeros((flat.shape[0], offsets.size - 1), dtype=np.int64)
    _best_within(flat, np.asarray(offsets, dtype=np.int64), float(tie), out)
    return out.reshape((*v.shape[:-1], offsets.size - 1))


@njit(parallel=True, cache=True)
def _best_within(flat, offsets, tie, out):  # type: ignore[no-untyped-def]
    n_s = offsets.size - 1
    widest = 0
    for s in range(n_s):
        widest = max(widest, offsets[s + 1] - offsets[s])
    for i in prange(flat.shape[0]):
        neg = np.empty(widest)
        for s in range(n_s):
            r0 = offsets[s]
            n = offsets[s + 1] - r0
            for r in range(n):
                neg[r] = -flat[i, r0 + r]
            out[i, s] = first_within(neg, n, tie)


def response_welfare(bench: Benchmark, predictions: np.ndarray, jury: Jury,
                     alphas: tuple[float, ...] = DEFAULT_ALPHAS,
                     memory_mb: float = 64.0) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, true) w_α of every flat response for every group then ALL:
    each (G+1, n_alphas, N). Predicted utilities are clipped at 0 (scores outside [0, 1])."""
    prep = _prepare(bench, predictions, jury)
    n, c = bench.n_responses, prep.targets
    shape = (len(prep.names), len(alphas), n)
    wp, wt = np.full(shape, np.nan), np.full(shape, np.nan)
    units_f = prep.units.astype(np.float64)
    tu = np.where(np.isnan(c.values), np.nan, c.units)
    blocks = list(prep.blocks(n, 16, memory_mb))
    with bar(len(blocks), "response welfare", unit="block") as b:
        for rows in blocks:
            up = np.empty((rows.stop - rows.start, prep.n_targets))
            ut = np.empty_like(up)
            _response_utilities(prep.pred, rows.start, c.values, c.k, 1.0, up)
            _response_utilities(units_f, rows.start, tu, c.k, float(prep.scale), ut)
            wp[:, :, rows] = np.moveaxis(_group_welfare(up, prep, alphas), -1, 0)
            wt[:, :, rows] = np.moveaxis(_group_welfare(ut, prep, alphas), -1, 0)
            b.update(1)
    return wp, wt


def select_welfare_optimal(bench: Benchmark, predictions: np.ndarray, jury: Jury,
                           alphas: tuple[float, ...] = DEFAULT_ALPHAS, memory_mb: float = 64.0,
                           tie: float = PRED_TIE) -> SelectionResult:
    """Per group and scenario, the response maximising w_α of the jurors' predicted closeness
    (their distance utilities), against the true optimum and the collective choice (the
    response chosen for the group's mean target)."""
    wp, wt = response_welfare(bench, predictions, jury, alphas, memory_mb)
    starts = bench.offsets[:-1]
    optimal = best_within(wp, bench.offsets, tie)
    oracle = np.maximum.reduceat(np.where(np.isnan(wt), -np.inf, wt), starts, axis=-1)
    oracle = np.where(np.isfinite(oracle), oracle, np.nan)
    achieved = np.take_along_axis(wt, starts + optimal, axis=-1)
    coll = choose(bench, predictions, jury.collective_targets().values, tie).T  # (G+1, S)
    idx = np.repeat((starts + coll)[:, None, :], len(alphas), axis=1)
    achieved_c = np.take_along_axis(wt, idx, axis=-1)
    return SelectionResult(tuple(alphas), (*jury.group_names, ALL), optimal, coll, achieved,
                           oracle, achieved_c)
