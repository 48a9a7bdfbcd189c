"""One self-contained HTML report over run folders: the papers' figures as inline SVG.

Reads what a run left behind (``summary.json``, ``per_target.parquet``, a ``manifest.json``
when present, a SPICA evaluation JSON) and draws, with matplotlib rendered to SVG text, the
figures of the steerable-pluralism paper (Fig. 5 polar plots of targets, Fig. 7 implicit bias,
Fig. 8 accuracy vs number of target attributes), the pluralism roadmap's welfare curves and
SPICA's per-group retrieval errors. Nothing in the page reaches the network.
"""

from __future__ import annotations

import html
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pluralign.engine.align.results import current_names
from pluralign.engine.errors import InputError
from pluralign.engine.store.files import read_json, write_bytes

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


@dataclass
class Run:
    """One run folder (or SPICA evaluation file) as the report reads it."""

    label: str
    """Name shown in the report: the folder's name, made unique across runs."""
    kind: str
    """``sweep``, ``jury`` or ``spica``."""
    summary: dict[str, Any]
    """The run's summary.json (or the SPICA evaluation JSON)."""
    per_target: Any = None
    """per_target.parquet as a pandas DataFrame, when the run has one."""
    manifest: dict[str, Any] | None = None
    """manifest.json, when the run has one."""
    notes: list[str] = field(default_factory=list)
    """What the run lacks, said in the report instead of failing."""


def load_run(path: Path, label: str | None = None) -> Run:
    """Read a run folder (sweep or jury) or a SPICA evaluation JSON file."""
    summary_path = path / "summary.json" if path.is_dir() else path
    if not summary_path.is_file():
        raise InputError("no summary.json here (is this a run folder or a SPICA evaluation "
                         "JSON?)", file=path)
    summary = read_json(summary_path)
    kind = _kind(summary) if isinstance(summary, dict) else None
    if kind is None:
        raise InputError("neither a sweep, a jury nor a SPICA evaluation (no 'sets', 'gaps' "
                         "or 'bank' field)", file=summary_path)
    if kind in ("sweep", "jury"):  # files written before a column was renamed read the same
        for key in ("sets", "groups"):
            if isinstance(summary.get(key), list):
                summary[key] = [current_names(r) if isinstance(r, dict) else r
                                for r in summary[key]]
    run = Run(label or (path.name if path.is_dir() else path.stem), kind, summary)
    manifest = path / "manifest.json" if path.is_dir() else None
    if manifest is not None and manifest.is_file():
        run.manifest = read_json(manifest)
    elif isinstance(summary.get("manifest"), dict):
        run.manifest = summary["manifest"]
    if kind == "sweep":
        table = path / "per_target.parquet"
        if table.is_file():
            import pyarrow.parquet as pq

            run.per_target = pq.read_table(table).to_pandas()
        else:
            run.notes.append("no per_target.parquet: polar plots of targets left out")
    return run


def _kind(summary: dict[str, Any]) -> str | None:
    if "sets" in summary:
        return "sweep"
    if "gaps" in summary and "groups" in summary:
        return "jury"
    if "bank" in summary and "groups" in summary:
        return "spica"
    return None


def _svg(fig: Any) -> str:
    """The figure as inline SVG text (fonts as text, stable ids)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "pluralign"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(width: float = 6.0, height: float = 3.6, polar: bool = False) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    ax = fig.add_subplot(projection="polar" if polar else None)
    return fig, ax


def _num(x: Any) -> float:
    return float("nan") if x is None or x == "inf" else float(x)


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, (int, float)):
        return f"{x:.{digits}f}" if isinstance(x, float) else str(x)
    return html.escape(str(x))


def _cell(value: Any, key: str, digits: int = 2) -> str:
    """A table cell that carries its exact value, so a reader (or a test) can check it."""
    exact = "" if value is None else html.escape(repr(value) if isinstance(value, float)
                                                   else str(value))
    return f'<td data-key="{html.escape(key)}" data-value="{exact}">{_fmt(value, digits)}</td>'


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fig_block(title: str, svg: str, caption: str) -> str:
    return (f'<figure class="plot" data-title="{html.escape(title)}">{svg}'
            f"<figcaption><b>{html.escape(title)}.</b> {html.escape(caption)}</figcaption>"
            "</figure>")


# -- sweeps -------------------------------------------------------------------------------

def attribute_points(run: Run) -> dict[str, dict[int, tuple[float, float | None, int]]]:
    """Fig. 8's points of a sweep: per set and number of target attributes, (mean accuracy,
    standard error of that mean, targets).

    The standard error is :func:`engine.per_scenario.standard_error` (sample std, ddof=1,
    over sqrt n; None below 2 targets) of the per-target accuracies in ``per_target.parquet``;
    without that table it is the summary's sample std over sqrt n (the same quantity up to
    rounding; a summary without ``std_ddof`` holds a population std, converted first by
    sqrt(n/(n-1))).
    """
    from pluralign.engine.align.per_scenario import standard_error

    table = run.per_target
    out: dict[str, dict[int, tuple[float, float | None, int]]] = {}
    for s in run.summary["sets"]:
        by = s.get("by_n_attributes") or {}
        points: dict[int, tuple[float, float | None, int]] = {}
        for key, row in by.items():
            k, n = int(key), int(row.get("targets") or 0)
            se: float | None = None
            if table is not None and {"set", "n_attributes", "accuracy"} <= set(table.columns):
                sel = table[(table["set"] == s["name"]) & (table["n_attributes"] == k)]
                se = standard_error(sel["accuracy"].to_numpy(dtype=float, na_value=math.nan))
            elif n >= 2 and row.get("std") is not None:
                std = float(row["std"])
                if int(s.get("std_ddof", 0)) == 0:  # written before the ddof=1 convention
                    std *= math.sqrt(n / (n - 1))
                se = std / math.sqrt(n)
            points[k] = (_num(row.get("mean")), se, n)
        out[s["name"]] = dict(sorted(points.items()))
    return out


def accuracy_by_attributes(runs: Sequence[Run]) -> str:
    """The steerable-pluralism paper's Fig. 8: accuracy vs number of target attributes, mean ±
    standard error of the mean over targets, and a table of the plotted points."""
    fig, ax = _figure()
    styles = {"all": "-", "sampled": ":"}
    rows = []
    for i, run in enumerate(runs):
        for name, points in attribute_points(run).items():
            for k, (mean, se, n) in points.items():
                key = f"{run.label}:fig8/{name}/{k}"
                rows.append([f"<td>{html.escape(run.label)}</td>", f"<td>{html.escape(name)}</td>",
                             f"<td>{k}</td>", _cell(mean, f"{key}/mean"),
                             _cell(se, f"{key}/se"), _cell(n, f"{key}/targets")])
            if len(points) < 2:
                continue
            ks = list(points)
            ax.errorbar([k + 0.06 * i for k in ks], [points[k][0] for k in ks],
                        yerr=[_num(points[k][1]) for k in ks], capsize=3, marker="o",
                        linestyle=styles.get(name, "--"), color=_COLORS[i % len(_COLORS)],
                        label=f"{run.label}: {name}")
    sizes = sorted({int(k) for r in runs for s in r.summary["sets"]
                    for k in (s.get("by_n_attributes") or {})})
    ax.set_xticks(sizes)
    ax.axhline(50, color="grey", linestyle="--", linewidth=0.8, label="random (2 responses)")
    ax.set_xlabel("attributes in the target")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=7, title="mean ± standard error", title_fontsize=7)
    block = _fig_block("Accuracy vs number of target attributes", _svg(fig),
                       "Dots: mean accuracy over the set's targets with that many attributes "
                       "(as in Fig. 8 of the steerable-pluralism paper); bars: ± the standard "
                       "error of that mean (sample standard deviation, ddof=1, over √n; none "
                       "for a single target). Solid: all targets, dotted: sampled targets.")
    return block + _table(["run", "set", "attributes", "accuracy mean", "standard error",
                           "targets"], rows)


def sets_table(run: Run) -> str:
    rows = []
    for s in run.summary["sets"]:
        name = s["name"]
        rows.append([f"<td>{html.escape(name)}</td>",
                     _cell(s.get("n_targets"), f"sets/{name}/n_targets"),
                     _cell(s.get("n_defined"), f"sets/{name}/n_defined"),
                     _cell(s.get("mean"), f"sets/{name}/mean"),
                     _cell(s.get("std"), f"sets/{name}/std"),
                     _cell(s.get("weighted_mean"), f"sets/{name}/weighted_mean")])
    return _table(["set", "targets", "defined", "accuracy mean", "std", "weighted score"], rows)


def regression_table(run: Run) -> str:
    reg = run.summary.get("regression") or {}
    rows = [[f"<td>{html.escape(a)}</td>", _cell(v.get("mse"), f"regression/{a}/mse", 4),
             _cell(v.get("pearson_r"), f"regression/{a}/pearson_r", 3)] for a, v in reg.items()]
    return _table(["attribute", "MSE", "Pearson r"], rows)


def regression_figure(runs: Sequence[Run]) -> str | None:
    """Per-attribute MSE and Pearson r of predicted vs true scores, runs side by side."""
    with_reg = [r for r in runs if r.summary.get("regression")]
    if not with_reg:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 3.2))
    axes = fig.subplots(1, 2)
    width = 0.8 / len(with_reg)
    for i, run in enumerate(with_reg):
        reg = run.summary["regression"]
        attrs = list(reg)
        xs = [j + i * width for j in range(len(attrs))]
        for ax, key in zip(axes, ("mse", "pearson_r"), strict=True):
            ax.bar(xs, [_num(reg[a].get(key)) for a in attrs], width,
                   color=_COLORS[i % len(_COLORS)], label=run.label)
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(attrs))], attrs,
                          rotation=30, fontsize=7)
    axes[0].set_title("MSE", fontsize=9)
    axes[1].set_title("Pearson r", fontsize=9)
    axes[1].legend(fontsize=7)
    return _fig_block("Predicted vs true scores per attribute", _svg(fig),
                      "Mean squared error and Pearson correlation of the scorer's predictions "
                      "against the labels, per attribute.")


def polar_targets(run: Run, attributes: Sequence[str], k: int = 3) -> str | None:
    """Polar plots in the style of the steerable-pluralism paper's Fig. 5: high, low and the
    best- and worst-served targets."""
    table = run.per_target
    if table is None or not len(table) or not attributes:
        return None
    defined = table[table["accuracy"].notna()]
    picks: list[tuple[str, dict[str, float], float]] = []
    for set_name in ("high", "low"):
        rows = defined[defined["set"] == set_name]
        if len(rows):
            r = rows.iloc[0]
            picks.append((set_name, json.loads(r["target"]), float(r["accuracy"])))
    pool = defined[defined["set"] == ("sampled" if (defined["set"] == "sampled").any()
                                      else defined["set"].iloc[0])] if len(defined) else defined
    ordered = pool.sort_values("accuracy", kind="stable")
    for tag, rows in (("best", ordered.tail(k).iloc[::-1]), ("worst", ordered.head(k))):
        for _, r in rows.iterrows():
            picks.append((tag, json.loads(r["target"]), float(r["accuracy"])))
    if not picks:
        return None
    fig, ax = _figure(5.0, 4.2, polar=True)
    angles = [2 * math.pi * j / len(attributes) for j in range(len(attributes))]
    for i, (tag, target, acc) in enumerate(picks):
        vals = [target.get(a, 0.5) for a in attributes]
        ax.plot([*angles, angles[0]], [*vals, vals[0]], color=_COLORS[i % len(_COLORS)],
                linewidth=1.2, label=f"{tag} ({acc:.1f} %)")
    ax.set_xticks(angles, list(attributes), fontsize=7)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.05, 1.0))
    return _fig_block(f"{run.label}: chosen targets", _svg(fig),
                      "Target values per attribute (neutral 0.5 where a target leaves an "
                      "attribute out): the high and low targets and the best- and "
                      "worst-served targets of the set, with their accuracy.")


def implicit_bias_figure(run: Run) -> str | None:
    """The steerable-pluralism paper's Fig. 7: mean labels of the responses a target-free
    selection picks, as :func:`pluralign.engine.align.metrics.implicit_bias` computed them into
    the summary."""
    bias = run.summary.get("implicit_bias")
    if not isinstance(bias, dict) or not bias:
        return None
    if all(isinstance(v, (int, float)) for v in bias.values()):  # one target-free selection
        bias = {f"{run.label} (target-free selection)": bias}
    lines = {k: v for k, v in bias.items() if isinstance(v, dict) and v}
    if not lines:
        return None
    attributes = list(next(iter(lines.values())))
    fig, ax = _figure(5.0, 4.2, polar=True)
    angles = [2 * math.pi * j / len(attributes) for j in range(len(attributes))]
    for i, (name, vec) in enumerate(lines.items()):
        vals = [_num(vec.get(a)) for a in attributes]
        ax.plot([*angles, angles[0]], [*vals, vals[0]], color=_COLORS[i % len(_COLORS)],
                label=name)
    ax.set_xticks(angles, attributes, fontsize=7)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.05, 1.0))
    return _fig_block(f"{run.label}: implicit bias", _svg(fig),
                      "Mean label values of the selected responses (as in Fig. 7 of the "
                      "steerable-pluralism paper).")


def _attributes(run: Run) -> list[str]:
    reg = run.summary.get("regression")
    if isinstance(reg, dict) and reg:
        return list(reg)
    if run.per_target is not None:
        high = run.per_target[run.per_target["set"] == "high"]
        if len(high):
            return list(json.loads(high.iloc[0]["target"]))
    return []


# -- juries -------------------------------------------------------------------------------

def jury_bars(run: Run) -> str:
    """Per-group accuracy and mean closeness with their intervals (pluralism roadmap §4.3)."""
    from matplotlib.figure import Figure

    groups = run.summary["groups"]
    names = [g["group"] for g in groups]
    fig = Figure(figsize=(7.5, 3.2))
    ax_acc, ax_close = fig.subplots(1, 2)
    ax_acc.bar(names, [_num(g.get("accuracy")) for g in groups], color=_COLORS[0])
    ax_acc.set_ylabel("accuracy (%)")
    close = [_num(g.get("closeness")) for g in groups]
    err = [[c - _num(g.get("closeness_lo", c)) for c, g in zip(close, groups, strict=True)],
           [_num(g.get("closeness_hi", c)) - c for c, g in zip(close, groups, strict=True)]]
    ax_close.bar(names, close, yerr=err, capsize=3, color=_COLORS[1])
    ax_close.set_ylabel("mean closeness")
    for ax in (ax_acc, ax_close):
        ax.tick_params(axis="x", labelsize=7, rotation=20)
    return _fig_block(f"{run.label}: accuracy and closeness per group", _svg(fig),
                      "Bars: per-group accuracy and mean closeness 1 − d/√k of the chosen "
                      "response to each juror's target (d its label distance, k the target's "
                      "attributes); error bars: bootstrap interval over scenarios.")


def _alphas(run: Run) -> list[tuple[str, float]]:
    alphas = (run.summary.get("config") or {}).get("alphas") or []
    out = []
    for a in alphas:
        value = math.inf if a == "inf" else float(a)
        key = "inf" if value == math.inf else f"{value:g}"
        out.append((key, value))
    return out


def welfare_curve(run: Run) -> str | None:
    """Welfare w_α vs α per group, with bootstrap intervals (pluralism roadmap §4.3)."""
    alphas = _alphas(run)
    if not alphas:
        return None
    finite = [v for _, v in alphas if v != math.inf]
    inf_x = (max(finite) + 1.0) if finite else 1.0
    xs = [inf_x if v == math.inf else v for _, v in alphas]
    fig, ax = _figure()
    for i, g in enumerate(run.summary["groups"]):
        ys, lo, hi = [], [], []
        for key, _ in alphas:
            y = _num(g.get(f"welfare_a{key}"))
            ys.append(y)
            lo.append(y - _num(g.get(f"welfare_a{key}_lo", y)))
            hi.append(_num(g.get(f"welfare_a{key}_hi", y)) - y)
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3,
                    color=_COLORS[i % len(_COLORS)], label=g["group"])
    ax.set_xticks(xs, [k if k != "inf" else "∞ (min)" for k, _ in alphas])
    ax.set_xlabel("α (0 utilitarian … ∞ Rawlsian)")
    ax.set_ylabel("welfare w_α")
    ax.legend(fontsize=7)
    return _fig_block(f"{run.label}: welfare vs α", _svg(fig),
                      "w_α of the jurors' utilities per group; error bars: bootstrap "
                      "interval over scenarios.")


def jury_table(run: Run) -> str:
    alphas = _alphas(run)
    rows = []
    for g in run.summary["groups"]:
        name = g["group"]
        row = [f"<td>{html.escape(name)}</td>",
               _cell(g.get("n_jurors"), f"groups/{name}/n_jurors"),
               _cell(g.get("accuracy"), f"groups/{name}/accuracy"),
               _cell(g.get("closeness"), f"groups/{name}/closeness", 3)]
        row += [_cell(g.get(f"welfare_a{k}"), f"groups/{name}/welfare_a{k}", 3)
                for k, _ in alphas]
        rows.append(row)
    return _table(["group", "jurors", "accuracy", "closeness", *[f"w_{k}" for k, _ in alphas]],
                  rows)


# -- SPICA --------------------------------------------------------------------------------

def spica_errors(run: Run) -> str:
    """SPICA (Fig. 3 and App. A.1): retrieval error per group, baseline vs SPICA."""
    groups = run.summary["groups"]
    names = [g["group"] for g in groups]
    fig, ax = _figure(6.5, 3.4)
    width = 0.38
    for j, (key, label) in enumerate((("baseline", "similarity only"), ("spica", "SPICA"))):
        mean = [_num(g[key]["mean"]) for g in groups]
        err = [[m - _num(g[key]["low"]) for m, g in zip(mean, groups, strict=True)],
               [_num(g[key]["high"]) - m for m, g in zip(mean, groups, strict=True)]]
        ax.bar([i + j * width for i in range(len(names))], mean, width, yerr=err, capsize=3,
               color=_COLORS[j], label=label)
    ax.set_xticks([i + width / 2 for i in range(len(names))], names)
    ax.set_ylabel(f"retrieval error (mean L, top-{run.summary.get('k', '?')})")
    ax.legend(fontsize=7)
    return _fig_block(f"{run.label}: retrieval error per group", _svg(fig),
                      "Mean preference mismatch between retrieved scenarios and the held-out "
                      "ground truth; error bars: bootstrap interval.")


def spica_table(run: Run) -> str:
    rows = []
    for g in run.summary["groups"]:
        name = g["group"]
        rows.append([f"<td>{html.escape(name)}</td>",
                     _cell(g.get("n_queries"), f"groups/{name}/n_queries")]
                    + [_cell(g[key]["mean"], f"groups/{name}/{key}/mean", 3)
                       for key in ("baseline", "spica", "gain")])
    return _table(["group", "queries", "similarity", "SPICA", "gain"], rows)


# -- costs and the page -------------------------------------------------------------------

def _flat(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict):
        out: list[tuple[str, Any]] = []
        for k, v in d.items():
            out += _flat(v, f"{prefix}{k}/")
        return out
    if isinstance(d, (int, float, str, bool)) or d is None:
        return [(prefix.rstrip("/"), d)]
    return [(prefix.rstrip("/"), f"{len(d)} entries")] if isinstance(d, list) else []


_MANIFEST_KEYS = ("pluralign", "command", "started", "seconds", "hosts", "counts", "failures",
                  "costs", "requests", "tokens", "retries", "interrupted", "stop_reason")
"""Manifest fields the report shows: what ran, how long, what it cost and what failed."""


def costs_table(run: Run) -> str:
    """Failures, counts and costs: the manifest's scalars and the run's timings."""
    items = [(f"seconds/{k}", v) for k, v in (run.summary.get("seconds") or {}).items()]
    if run.manifest:
        items += [(f"manifest/{k}", v) for k, v in _flat(run.manifest)
                  if k.split("/")[0] in _MANIFEST_KEYS]
    else:
        run.notes.append("no manifest.json: failures and costs come from summary.json only")
    if not items:
        return "<p>No timings or costs recorded.</p>"
    return _table(["figure", "value"], [[f"<td>{html.escape(k)}</td>", _cell(v, k, 3)]
                                        for k, v in items])


def _run_section(run: Run) -> str:
    s = run.summary
    facts = {k: s.get(k) for k in ("benchmark", "split", "scenarios", "scorer", "bank",
                                   "groups_file", "jurors") if k in s}
    parts = [f'<section class="run" data-run="{html.escape(run.label)}" '
             f'data-kind="{run.kind}"><h2>{html.escape(run.label)} ({run.kind})</h2>',
             "<p>" + "; ".join(f"{html.escape(k)}: <code>{html.escape(str(v))}</code>"
                               for k, v in facts.items()) + "</p>"]
    if run.kind == "sweep":
        parts += [sets_table(run), regression_table(run)]
        for block in (polar_targets(run, _attributes(run)), implicit_bias_figure(run)):
            if block:
                parts.append(block)
        if "implicit_bias" not in s:
            run.notes.append("no implicit-bias figures in this run (Fig. 7 needs the labels "
                             "of a target-free selection)")
    elif run.kind == "jury":
        parts += [jury_table(run), jury_bars(run)]
        curve = welfare_curve(run)
        if curve:
            parts.append(curve)
    else:
        parts += [spica_table(run), spica_errors(run)]
    parts += ["<h3>Failures and costs</h3>", costs_table(run)]
    if run.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>"
                                                    for n in run.notes) + "</ul>")
    parts.append("</section>")
    return "".join(parts)


_CSS = """body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222;background:#fff}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:2px 8px;
font-size:13px;text-align:right}td:first-child{text-align:left}figure.plot{display:inline-block;
margin:.5em;vertical-align:top}figure.plot svg{max-width:100%;height:auto}figcaption{font-size:12px;
max-width:560px}section.run{border-top:2px solid #888;margin-top:1.5em}.notes{color:#777}"""

# Marks the page as rendered once every figure has a size; the screenshot test reads it.
_SCRIPT = """document.addEventListener('DOMContentLoaded',function(){var f=document.querySelectorAll(
'figure.plot svg');var ok=0;f.forEach(function(s){var r=s.getBoundingClientRect();
s.parentNode.setAttribute('data-rect',[r.left+scrollX,r.top+scrollY,r.width,r.height].map(Math.round)
.join(','));if(r.width>0&&r.height>0){ok++;}});document.body.setAttribute('data-figures',ok+'/'+f.length);});"""


def build_report(paths: Sequence[Path], title: str = "pluralign report") -> str:
    """The whole report as one HTML string: a comparison of the runs, then one section each."""
    from pluralign.engine.version import __version__

    runs = _unique([load_run(p) for p in paths])
    sweeps = [r for r in runs if r.kind == "sweep"]
    body = [f"<h1>{html.escape(title)}</h1><p>{len(runs)} run(s); pluralign {__version__}.</p>"]
    if sweeps:
        body.append("<h2>Sweeps side by side</h2>")
        body.append(_compare_table(sweeps))
        body.append(accuracy_by_attributes(sweeps))
        reg = regression_figure(sweeps)
        if reg:
            body.append(reg)
    body += [_run_section(r) for r in runs]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
            f"<script>{_SCRIPT}</script></head><body>{''.join(body)}</body></html>")


def _unique(runs: list[Run]) -> list[Run]:
    seen: dict[str, int] = {}
    for r in runs:
        n = seen.get(r.label, 0)
        seen[r.label] = n + 1
        if n:
            r.label = f"{r.label} ({n + 1})"
    return runs


def _compare_table(sweeps: Sequence[Run]) -> str:
    names = list(dict.fromkeys(s["name"] for r in sweeps for s in r.summary["sets"]))
    rows = []
    for r in sweeps:
        by = {s["name"]: s for s in r.summary["sets"]}
        rows.append([f"<td>{html.escape(r.label)}</td>",
                     f"<td>{html.escape(str(r.summary.get('scorer', '')))}</td>"]
                    + [_cell(by[n].get("mean") if n in by else None, f"{r.label}:sets/{n}/mean")
                       for n in names])
    return _table(["run", "scorer", *names], rows)


# ---------------------------------------------------------------- the job


@dataclass(frozen=True, kw_only=True)
class ReportConfig:
    """The runs ``pluralign report`` shows and the page it writes."""

    runs: tuple[str, ...]
    """Sweep or jury output folders, or SPICA evaluation JSON files."""
    out: str
    """HTML file to write."""
    title: str = "pluralign report"
    """Page title."""


@dataclass(frozen=True)
class ReportResult:
    """The page written."""

    path: Path
    """The HTML file."""
    size: int
    """Its length in characters."""
    runs: int
    """Runs it shows."""


def run_report(config: ReportConfig) -> ReportResult:
    """Build the page over ``config.runs`` and write it to ``config.out``."""
    try:
        import matplotlib  # noqa: F401  (the optional `report` extra draws the figures)
    except ImportError as e:
        raise InputError(f"the report needs matplotlib ({e})",
                         hint="pip install 'pluralign[report]'") from None
    page = build_report([Path(r) for r in config.runs], title=config.title)
    path = write_bytes(config.out, page.encode())
    return ReportResult(path, len(page), len(config.runs))
