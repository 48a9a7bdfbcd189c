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
from pluralign.engine.errors import InputError, PluralignError
from pluralign.engine.store.files import read_json, write_bytes
from pluralign.jobs import report_drilldown
from pluralign.jobs.compare import compare_runs
from pluralign.jobs.runs import SweepRun, check_comparable, load_sweep

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
_RC: Any = {"text.parse_math": False, "text.usetex": False, "font.size": 10.0,
       "legend.fontsize": 10.0, "axes.titlesize": 11.0, "xtick.labelsize": 9.0,
       "ytick.labelsize": 9.0}
"""Names are drawn as text, never as mathtext or LaTeX (a run or group named ``$x$`` stays
``$x$``); fonts readable at page width."""
WIDTH = 11.0
"""Figure width in inches: the figures are drawn at page width."""


def _label(name: object) -> str:
    """A legend label that matplotlib keeps: it drops labels starting with ``_``."""
    text = str(name)
    return "\u200b" + text if text.startswith("_") else text


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
    _check_shape(summary, kind, summary_path)
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


def _is_num(x: object) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))


_READ_NUMBERS = ("n_targets", "n_defined", "mean", "std", "weighted_mean", "std_ddof",
                 "n_jurors", "accuracy", "n_queries")
"""The numbers of a set's or group's row that the report draws or tabulates."""


def _check_shape(summary: dict[str, Any], kind: str, path: Path) -> None:
    """One clear line, naming the field, for a summary.json of a shape the report cannot
    read (instead of a TypeError or AttributeError while drawing)."""

    def need(ok: bool, field: str, what: str) -> None:
        if not ok:
            raise InputError(f"unexpected shape: {what}", file=path, field=field,
                             hint="pass a folder written by pluralign sweep, jury or spica")

    for key in ("seconds", "manifest", "config", "regression", "gaps", "implicit_bias"):
        need(summary.get(key) is None or isinstance(summary[key], dict), key, "not an object")
    for key in ("benchmark", "split", "scorer"):
        need(summary.get(key) is None or isinstance(summary[key], str), key, "not a string")
    need(_is_num(summary.get("scenarios")), "scenarios", "not a number")
    rows = summary.get("sets" if kind == "sweep" else "groups")
    name = "sets" if kind == "sweep" else "groups"
    need(isinstance(rows, list), name, "not a list")
    for i, row in enumerate(rows if isinstance(rows, list) else []):
        need(isinstance(row, dict), f"{name}[{i}]", "not an object")
        label = row.get("name" if kind == "sweep" else "group")
        need(isinstance(label, str), f"{name}[{i}]", "no name")
        for k, v in row.items():
            if kind == "spica" and k in ("baseline", "spica", "gain"):
                need(isinstance(v, dict) and all(_is_num(v.get(p)) for p in ("mean", "low",
                                                                             "high")),
                     f"{name}[{i}].{k}", "not {mean, low, high} numbers")
            elif k == "by_n_attributes":
                need(v is None or (isinstance(v, dict) and all(
                    str(n).isdigit() and isinstance(r, dict) and all(map(_is_num, r.values()))
                    for n, r in v.items())), f"{name}[{i}].{k}", "not {k: {mean, std, targets}}")
            elif k in _READ_NUMBERS or k.startswith(("welfare_", "closeness")):
                need(_is_num(v), f"{name}[{i}].{k}", "not a number")
    for key in ("regression", "gaps"):
        for k, v in (summary.get(key) or {}).items():
            need(isinstance(v, dict), f"{key}.{k}", "not an object")
    alphas = (summary.get("config") or {}).get("alphas")
    need(alphas is None or (isinstance(alphas, list) and all(
        _is_num(a) or a == "inf" for a in alphas)), "config.alphas", "not a list of numbers")
    selection = summary.get("selection")
    need(selection is None or (isinstance(selection, list) and all(
        isinstance(r, dict) for r in selection)), "selection", "not a list of objects")


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


def _figure(width: float = WIDTH, height: float = 4.2, polar: bool = False) -> tuple[Any, Any]:
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
                        label=_label(f"{run.label}: {name}"))
    sizes = sorted({int(k) for r in runs for s in r.summary["sets"]
                    for k in (s.get("by_n_attributes") or {})})
    ax.set_xticks(sizes)
    ax.axhline(50, color="grey", linestyle="--", linewidth=0.8, label="random (2 responses)")
    ax.set_xlabel("attributes in the target")
    ax.set_ylabel("accuracy (%)")
    ax.legend(title="mean ± standard error", loc="upper left", bbox_to_anchor=(1.01, 1.0))
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

    fig = Figure(figsize=(WIDTH, 3.8))
    axes = fig.subplots(1, 2)
    width = 0.8 / len(with_reg)
    for i, run in enumerate(with_reg):
        reg = run.summary["regression"]
        attrs = list(reg)
        xs = [j + i * width for j in range(len(attrs))]
        for ax, key in zip(axes, ("mse", "pearson_r"), strict=True):
            ax.bar(xs, [_num(reg[a].get(key)) for a in attrs], width,
                   color=_COLORS[i % len(_COLORS)], label=_label(run.label))
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(attrs))], attrs,
                          rotation=20)
    axes[0].set_title("MSE")
    axes[1].set_title("Pearson r")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _fig_block("Predicted vs true scores per attribute", _svg(fig),
                      "Mean squared error and Pearson correlation of the scorer's predictions "
                      "against the labels, per attribute.")


def _short(target: dict[str, float]) -> str:
    """``helpfulness=1, verbosity=0`` (the empty target: ``no attribute``)."""
    return ", ".join(f"{a}={v:g}" for a, v in target.items()) or "no attribute"


def named_targets(run: Run, k: int = 3) -> list[tuple[str, str, dict[str, float], Any]]:
    """(tag, set, target, per_target row) of the targets a reader looks for: high, low, and
    the best- and worst-served of the largest set."""
    table = run.per_target
    if table is None or not len(table):
        return []
    defined = table[table["accuracy"].notna()]
    out = []
    for name in ("high", "low"):
        rows = defined[defined["set"] == name]
        if len(rows):
            out.append((name, name, json.loads(rows.iloc[0]["target"]), rows.iloc[0]))
    if len(defined):
        biggest = defined["set"].value_counts().idxmax()
        pool = defined[defined["set"] == biggest].sort_values("accuracy", kind="stable")
        for tag, rows in (("best", pool.tail(k).iloc[::-1]), ("worst", pool.head(k))):
            for _, r in rows.iterrows():
                out.append((tag, str(biggest), json.loads(r["target"]), r))
    return out


def targets_served(run: Run) -> str | None:
    """How well each target was served: per-target accuracy by number of target attributes
    (box: the largest set's quartiles; dots: the smaller sets' targets), the named targets
    marked, and a table of them."""
    table = run.per_target
    if table is None or not len(table) or "n_attributes" not in table:
        return None
    defined = table[table["accuracy"].notna()]
    if not len(defined):
        return None
    fig, ax = _figure(WIDTH, 4.6)
    biggest = defined["set"].value_counts().idxmax()
    big = defined[defined["set"] == biggest]
    ks = sorted(int(k) for k in big["n_attributes"].unique())
    ax.boxplot([big[big["n_attributes"] == k]["accuracy"].to_numpy(float) for k in ks],
               positions=ks, widths=0.45, showfliers=False, patch_artist=True,
               boxprops={"facecolor": "#dbe6f5", "edgecolor": "#1f77b4"},
               medianprops={"color": "#1f77b4"})
    ax.plot([], [], color="#1f77b4", linewidth=6, alpha=0.3,
            label=_label(f"{biggest}: {len(big)} targets (quartiles, whiskers 1.5 IQR)"))
    others = [n for n in defined["set"].unique() if n not in (biggest, "high", "low")]
    for i, name in enumerate(others):
        rows = defined[defined["set"] == name]
        ax.scatter(rows["n_attributes"] + 0.3 + 0.06 * i, rows["accuracy"], s=14,
                   color=_COLORS[(i + 1) % len(_COLORS)],
                   label=_label(f"{name}: {len(rows)} targets"))
    markers = {"high": ("^", "#2ca02c"), "low": ("v", "#d62728"), "best": ("*", "#9467bd"),
               "worst": ("X", "#8c564b")}
    seen: set[str] = set()
    for tag, _, target, row in named_targets(run, k=1):
        marker, color = markers[tag]
        ax.scatter([row["n_attributes"]], [row["accuracy"]], marker=marker, s=90, color=color,
                   edgecolor="black", zorder=5,
                   label=_label(f"{tag}: {_short(target)} ({row['accuracy']:.1f} %)")
                   if tag not in seen else None)
        seen.add(tag)
    ax.set_xticks(ks)
    ax.set_xlabel("attributes in the target")
    ax.set_ylabel("accuracy (%)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    rows_html = [[f"<td>{html.escape(tag)}</td>", f"<td>{html.escape(set_name)}</td>",
                  f"<td><code>{html.escape(_short(target))}</code></td>",
                  _cell(float(row["accuracy"]), f"named/{tag}/accuracy"),
                  _cell(_num(row.get("weighted_score")), f"named/{tag}/weighted", 1),
                  f"<td>{int(row['correct'])}/{int(row['counted'])}</td>"]
                 for tag, set_name, target, row in named_targets(run)]
    named = ("<table class=\"named\"><thead><tr><th>target</th><th>set</th><th>values</th>"
             "<th>accuracy</th><th>weighted score</th><th>correct/counted</th></tr></thead>"
             "<tbody>" + "".join("<tr>" + "".join(r).replace(" data-key=", " data-named=")
                                 + "</tr>" for r in rows_html) + "</tbody></table>")
    return _fig_block(f"{run.label}: how well each target was served", _svg(fig),
                      "Each target's accuracy (percent of counted scenarios whose chosen "
                      "response is label-closest), by how many attributes it names; the high "
                      "and low targets and the best- and worst-served target are marked and "
                      "named.") + named


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
    fig, ax = _figure(WIDTH * 0.6, 5.0, polar=True)
    angles = [2 * math.pi * j / len(attributes) for j in range(len(attributes))]
    for i, (name, vec) in enumerate(lines.items()):
        vals = [_num(vec.get(a)) for a in attributes]
        ax.plot([*angles, angles[0]], [*vals, vals[0]], color=_COLORS[i % len(_COLORS)],
                marker="o", label=_label(name))
    ax.set_xticks(angles, attributes)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.1, 1.0))
    return _fig_block(f"{run.label}: implicit bias", _svg(fig),
                      "Mean label values of the selected responses (as in Fig. 7 of the "
                      "steerable-pluralism paper).")


# -- juries -------------------------------------------------------------------------------

def jury_bars(run: Run) -> str:
    """Per-group accuracy and mean closeness with their intervals (pluralism roadmap §4.3)."""
    from matplotlib.figure import Figure

    groups = run.summary["groups"]
    names = [g["group"] for g in groups]
    fig = Figure(figsize=(WIDTH, 3.8))
    ax_acc, ax_close = fig.subplots(1, 2)
    names = [_label(n) for n in names]
    ax_acc.bar(names, [_num(g.get("accuracy")) for g in groups], color=_COLORS[0])
    ax_acc.set_ylabel("accuracy (%)")
    close = [_num(g.get("closeness")) for g in groups]
    err = [[c - _num(g.get("closeness_lo", c)) for c, g in zip(close, groups, strict=True)],
           [_num(g.get("closeness_hi", c)) - c for c, g in zip(close, groups, strict=True)]]
    ax_close.bar(names, close, yerr=err, capsize=3, color=_COLORS[1])
    ax_close.set_ylabel("mean closeness")
    for ax in (ax_acc, ax_close):
        ax.tick_params(axis="x", rotation=20)
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
        ax.errorbar([x + 0.03 * i for x in xs], ys, yerr=[lo, hi], marker="o", capsize=3,
                    color=_COLORS[i % len(_COLORS)], label=_label(g["group"]))
    ax.set_xticks(xs, [k if k != "inf" else "∞ (min)" for k, _ in alphas])
    ax.set_xlabel("α (0 utilitarian … ∞ Rawlsian)")
    ax.set_ylabel("welfare w_α")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
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


def gaps_table(run: Run) -> str | None:
    """The gap between the best- and worst-served group on each metric, as the CLI prints."""
    gaps = run.summary.get("gaps") or {}
    rows = [[f"<td>{html.escape(metric)}</td>", f"<td>{html.escape(str(g.get('best')))}</td>",
             f"<td>{html.escape(str(g.get('worst')))}</td>",
             _cell(g.get("gap"), f"gaps/{metric}/gap", 3)]
            for metric, g in gaps.items() if isinstance(g, dict)]
    if not rows:
        return None
    return "<h3>Gaps between groups</h3>" + _table(["metric", "best group", "worst group",
                                                     "gap"], rows)


def selection_table(run: Run) -> str | None:
    """One response per scenario for the whole group: the mean true welfare of the oracle,
    the welfare-optimal and the collective choice (with the share of scenarios at the
    optimum), per group and α (pluralism roadmap §4.3)."""
    sel = run.summary.get("selection")
    if not sel:
        return None
    rows = []
    for r in sel:
        rows.append([f"<td>{html.escape(str(r.get('group')))}</td>",
                     f"<td>{html.escape(str(r.get('alpha')))}</td>"]
                    + [f'<td data-sel="{k}" data-value="{_fmt(r.get(k), 6)}">{_fmt(r.get(k), 3)}'
                       + (f" ({_fmt(r.get(hit), 2)})" if hit else "") + "</td>"
                       for k, hit in (("oracle", None), ("welfare_optimal", "optimal_hit"),
                                      ("collective", "collective_hit"))])
    return ("<h3>Selection: one response per scenario for the whole group</h3>"
            "<p class=\"muted\">Mean true welfare over scenarios (in brackets: the share of "
            "scenarios at the optimum) of the oracle, the welfare-optimal choice from the "
            "predictions and the collective choice.</p>"
            + _table(["group", "α", "oracle", "welfare-optimal", "collective"], rows))


# -- SPICA --------------------------------------------------------------------------------

def spica_errors(run: Run) -> str:
    """SPICA (Fig. 3 and App. A.1): retrieval error per group, baseline vs SPICA."""
    groups = run.summary["groups"]
    names = [g["group"] for g in groups]
    fig, ax = _figure(WIDTH, 3.8)
    width = 0.38
    for j, (key, label) in enumerate((("baseline", "similarity only"), ("spica", "SPICA"))):
        mean = [_num(g[key]["mean"]) for g in groups]
        err = [[m - _num(g[key]["low"]) for m, g in zip(mean, groups, strict=True)],
               [_num(g[key]["high"]) - m for m, g in zip(mean, groups, strict=True)]]
        ax.bar([i + j * width for i in range(len(names))], mean, width, yerr=err, capsize=3,
               color=_COLORS[j], label=label)
    ax.set_xticks([i + width / 2 for i in range(len(names))], [_label(n) for n in names])
    ax.set_ylabel(f"retrieval error (mean L, top-{run.summary.get('k', '?')})")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
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

_MANIFEST_FIELDS = (("command", "command"), ("pluralign", "pluralign"),
                   ("git_commit", "commit"), ("started", "started"), ("ended", "ended"),
                   ("seconds", "seconds"), ("interrupted", "interrupted"),
                   ("stop_reason", "stopped"))
_COUNTS = ("requests", "sent", "cached", "completed", "failed", "retries", "retried",
           "prompt_tokens", "completion_tokens", "cost", "samples")
"""The counts shown on the manifest's first lines (the rest fold away)."""


def _scalar(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".")
    if isinstance(v, (list, tuple)):
        return ", ".join(_scalar(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={_scalar(x)}" for k, x in v.items()
                         if isinstance(x, (int, float, str, bool)))
    return str(v)


def manifest_block(run: Run) -> str:
    """The run's manifest as a compact, labelled block: what ran, where, how long, what it
    cost and what failed; every count in a folded table."""
    m = run.manifest
    items: list[tuple[str, str]] = []
    seconds = run.summary.get("seconds") or {}
    if not m:
        run.notes.append("no manifest.json: failures and costs come from summary.json only")
    else:
        argv = m.get("argv")
        for key, label in _MANIFEST_FIELDS:
            value = " ".join(map(str, argv)) if key == "command" and isinstance(argv, list) \
                else m.get(key)
            if value not in (None, "", False):
                items.append((label, _scalar(value)))
        hosts = m.get("hosts")
        if hosts:
            items.append(("hosts", f"{len(hosts)}: " + _scalar(
                [h.get("host", h) if isinstance(h, dict) else h for h in hosts])
                if isinstance(hosts, list) else _scalar(hosts)))
        for key in ("benchmark", "scorer"):
            v = m.get(key)
            if isinstance(v, dict) and v.get("identity"):
                items.append((key, str(v["identity"])))
    if seconds:
        items.append(("timings (s)", _scalar(seconds)))
    counts = (m or {}).get("counts") if m else None
    if isinstance(counts, dict) and counts:
        shown = {k: counts[k] for k in _COUNTS if k in counts}
        if shown:
            items.append(("counts", _scalar(shown)))
    if not items:
        return "<p>No manifest, timings or costs recorded.</p>"
    block = "".join(f"<dt>{html.escape(k)}</dt><dd><code>{html.escape(v)}</code></dd>"
                    for k, v in items)
    folded = ""
    if isinstance(counts, dict) and counts:
        rows = [[f"<td>{html.escape(k)}</td>", _cell(v, f"manifest/counts/{k}", 3)]
                for k, v in counts.items() if isinstance(v, (int, float, str, bool))]
        folded = (f"<details><summary>every count ({len(rows)})</summary>"
                  + _table(["count", "value"], rows) + "</details>")
    return f'<dl class="manifest">{block}</dl>{folded}'


def _run_section(run: Run, drill: str | None = None) -> str:
    s = run.summary
    facts = {k: s.get(k) for k in ("benchmark", "split", "scenarios", "scorer", "bank",
                                   "groups_file", "jurors") if k in s}
    bench = (run.manifest or {}).get("benchmark") if isinstance(run.manifest, dict) else None
    if isinstance(bench, dict):  # a jury's summary names no split or scenario count
        for k in ("split", "scenarios"):
            if k not in facts and bench.get(k) is not None:
                facts[k] = bench[k]
    parts = [f'<section class="run" data-run="{html.escape(run.label)}" '
             f'data-kind="{run.kind}"><h2>{html.escape(run.label)} ({run.kind})</h2>',
             "<p>" + "; ".join(f"{html.escape(k)}: <code>{html.escape(str(v))}</code>"
                               for k, v in facts.items()) + "</p>"]
    if run.kind == "sweep":
        parts += [sets_table(run), regression_table(run)]
        for block in (targets_served(run), implicit_bias_figure(run)):
            if block:
                parts.append(block)
        if "implicit_bias" not in s:
            run.notes.append("no implicit-bias figures in this run (Fig. 7 needs the labels "
                             "of a target-free selection)")
    elif run.kind == "jury":
        parts += [jury_table(run), jury_bars(run)]
        for extra in (welfare_curve(run), gaps_table(run), selection_table(run)):
            if extra:
                parts.append(extra)
    else:
        parts += [spica_table(run), spica_errors(run)]
    if drill:
        parts += ["<h3>Per-scenario drill-down</h3>", drill]
    parts += ["<h3>Manifest: what ran, failures and costs</h3>", manifest_block(run)]
    if run.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>"
                                                    for n in run.notes) + "</ul>")
    parts.append("</section>")
    return "".join(parts)


_CSS = """body{font-family:sans-serif;margin:2em auto;max-width:1400px;padding:0 3em;color:#222;
background:#fff}table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;
padding:2px 8px;font-size:13px;text-align:right}td:first-child{text-align:left}
figure.plot{display:block;margin:1em 0}figure.plot svg{width:100%;height:auto}
figcaption{font-size:13px;max-width:1000px}section.run{border-top:2px solid #888;margin-top:1.5em}
.notes,.muted{color:#777}dl.manifest{display:grid;grid-template-columns:max-content 1fr;
gap:2px 1em;font-size:13px}dl.manifest dt{color:#555}dl.manifest dd{margin:0;word-break:break-all}
.drill-text,.drill-raw{white-space:pre-wrap;background:#f6f6f8;padding:.5em;max-height:18em;
overflow:auto}.drill-list td{text-align:left}.drill-response{border:1px solid #ddd;padding:.2em .8em;
margin:.6em 0}"""

# Marks the page as rendered once every figure has a size; the screenshot test reads it.
_SCRIPT = """document.addEventListener('DOMContentLoaded',function(){var f=document.querySelectorAll(
'figure.plot svg');var ok=0;f.forEach(function(s){var r=s.getBoundingClientRect();
s.parentNode.setAttribute('data-rect',[r.left+scrollX,r.top+scrollY,r.width,r.height].map(Math.round)
.join(','));if(r.width>0&&r.height>0){ok++;}});document.body.setAttribute('data-figures',ok+'/'+f.length);});"""


def build_report(paths: Sequence[Path], title: str = "pluralign report", *,
                 cache: str | None = None, data: str | None = None,
                 drilldown: bool = True, bootstrap: int = 1000) -> str:
    """The whole report as one HTML string: a comparison of the runs, then one section each
    (a sweep's with its per-scenario drill-down when its benchmark and cache can be read).
    Runs of another benchmark identity, split or scenario count are refused."""
    import matplotlib

    from pluralign.engine.version import __version__

    runs = _unique([load_run(p) for p in paths])
    check_comparable([(str(p), r.summary) for p, r in zip(paths, runs, strict=True)])
    with matplotlib.rc_context(_RC):
        body = _body(runs, list(paths), title, __version__, cache, data, drilldown, bootstrap)
    script = f"{_SCRIPT}{report_drilldown.SCRIPT}"
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
            f"<script>{script}</script></head><body>{''.join(body)}</body></html>")


def _body(runs: list[Run], paths: list[Path], title: str, version: str, cache: str | None,
          data: str | None, drilldown: bool, bootstrap: int = 1000) -> list[str]:
    sweeps = [r for r in runs if r.kind == "sweep"]
    body = [f"<h1>{html.escape(title)}</h1><p>{len(runs)} run(s); pluralign {version}.</p>"]
    loaded = {i: _loaded(run, path, cache, data) for i, (run, path)
              in enumerate(zip(runs, paths, strict=True))
              if run.kind == "sweep" and (drilldown or len(sweeps) > 1)}
    if sweeps:
        body.append("<h2>Sweeps side by side</h2>")
        body.append(_compare_table(sweeps))
        body.append(accuracy_by_attributes(sweeps))
        reg = regression_figure(sweeps)
        if reg:
            body.append(reg)
        paired = [x for x in loaded.values() if x is not None and x.predictions is not None]
        if len(paired) > 1:
            body.append(paired_table(paired, bootstrap))
    for i, (run, path) in enumerate(zip(runs, paths, strict=True)):
        sweep = loaded.get(i)
        drill = (report_drilldown.block(i, run.label, report_drilldown.encoded(sweep),
                                        sweep.bench.n_scenarios)
                 if drilldown and sweep is not None else None)
        try:
            body.append(_run_section(run, drill))
        except (TypeError, AttributeError, KeyError, ValueError, IndexError) as e:
            raise InputError(f"summary.json has a shape the report cannot read "
                             f"({type(e).__name__}: {str(e)[:120]})",
                             file=path / "summary.json" if path.is_dir() else path) from None
    return body


def _loaded(run: Run, path: Path, cache: str | None, data: str | None) -> SweepRun | None:
    """The sweep with its benchmark and cached scores, or None with a note saying why the
    drill-down and the paired comparison leave it out."""
    try:
        return load_sweep(path, cache=cache, data=data, label=run.label)
    except PluralignError as e:
        run.notes.append(f"no per-scenario drill-down or paired comparison: "
                         f"{str(e).splitlines()[0]}")
        return None


def paired_table(sweeps: Sequence[SweepRun], bootstrap: int) -> str:
    """``pluralign compare`` of the first sweep (A) against each other one (B)."""
    rows = []
    a = sweeps[0]
    for b in sweeps[1:]:
        r = compare_runs(a, b, bootstrap=bootstrap)
        for s in r.sets:
            rows.append([f"<td>{html.escape(b.label)}</td>", f"<td>{html.escape(s.set)}</td>",
                         f"<td>{s.targets}</td>", _cell(s.accuracy_diff, "paired/acc", 1),
                         f"<td>[{s.accuracy_lo:+.1f}, {s.accuracy_hi:+.1f}]</td>",
                         _cell(s.weighted_diff, "paired/weighted", 1),
                         f"<td>[{s.weighted_lo:+.1f}, {s.weighted_hi:+.1f}]</td>",
                         f"<td>{100 * s.a_beats_b:.0f} %</td>",
                         f"<td>{100 * s.b_beats_a:.0f} %</td>"])
    table = _table(["B", "set", "targets", "accuracy A − B", "95 % interval",
                    "weighted A − B", "95 % interval", "A beats B", "B beats A"], rows)
    return (f"<h3>Paired comparison: A = {html.escape(a.label)}</h3><p class=\"muted\">"
            f"Differences in mean accuracy and weighted score over each set's targets, with "
            f"a paired bootstrap interval over scenarios ({bootstrap} resamples, the same "
            f"scenarios drawn for both runs), and the share of targets each run serves "
            f"better (as <code>pluralign compare</code>).</p>"
            + table.replace(' data-key="paired/', ' data-paired="'))


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
                     f"<td>{html.escape(str(r.summary.get('scorer', '')))}</td>",
                     f"<td>{html.escape(str(r.summary.get('benchmark', '—')))}</td>",
                     f"<td>{html.escape(str(r.summary.get('split', '—')))}</td>",
                     _cell(r.summary.get("scenarios"), f"{r.label}:scenarios")]
                    + [_cell(by[n].get("mean") if n in by else None, f"{r.label}:sets/{n}/mean")
                       for n in names])
    return _table(["run", "scorer", "benchmark", "split", "scenarios",
                   *[f"{n} accuracy" for n in names]], rows)


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
    cache: str | None = None
    """Score cache of the sweeps' drill-down (None: the cache each run named, else the
    default)."""
    data: str | None = None
    """Data folder of the drill-down's benchmarks (None: the one each run named, then
    $PLURALIGN_DATA)."""
    drilldown: bool = True
    """Embed each sweep's per-scenario drill-down (compressed, opened on demand);
    ``--no-drilldown`` leaves it out."""
    bootstrap: int = 1000
    """Bootstrap resamples of the paired comparison of two or more sweeps."""


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
    page = build_report([Path(r) for r in config.runs], title=config.title, cache=config.cache,
                        data=config.data, drilldown=config.drilldown,
                        bootstrap=config.bootstrap)
    path = write_bytes(config.out, page.encode())
    return ReportResult(path, len(page), len(config.runs))
