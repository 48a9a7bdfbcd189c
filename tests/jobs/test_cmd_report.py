"""``pluralign report`` in a real headless Chromium: no console errors, every figure drawn,
the numbers shown equal the runs' summary.json."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pluralign.jobs.cli import main

pytest.importorskip("matplotlib")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
WIDTH = 1200


def _chromium(tmp: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
             "--force-device-scale-factor=1", "--hide-scrollbars"]
    return subprocess.run([CHROMIUM, *flags, *extra, url], capture_output=True, text=True,
                          timeout=120, check=True)


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


class _Page(HTMLParser):
    """Figures (their rendered rectangles) and the exact values of every checked cell."""

    def __init__(self) -> None:
        super().__init__()
        self.run: str | None = None
        self.rects: list[tuple[str, tuple[int, int, int, int]]] = []
        self.cells: dict[tuple[str | None, str], tuple[str, str]] = {}
        self.figures = ""
        self._cell: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.figures = a.get("data-figures", "")
        if tag == "section" and "data-run" in a:
            self.run = a["data-run"]
        if tag == "figure" and "data-rect" in a:
            x, y, w, h = (int(v) for v in a["data-rect"].split(","))
            self.rects.append((a.get("data-title", ""), (x, y, w, h)))
        if tag == "td" and "data-key" in a:
            self._cell = (a["data-key"], a["data-value"])

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            key, value = self._cell
            self.cells[(self.run, key)] = (value, data)
            self._cell = None


def _lookup(summary: dict, key: str) -> object:
    """'sets/all/mean' in a sweep, 'groups/ALL/welfare_ainf' in a jury or SPICA summary."""
    head, *rest = key.split("/")
    node: object = summary[head]
    if head in ("sets", "groups") and isinstance(node, list):
        by = {g.get("name", g.get("group")): g for g in node}
        node = by[rest.pop(0)]
    for part in rest:
        assert isinstance(node, dict)
        node = node[part]
    return node


def _ink(png: Path, rect: tuple[int, int, int, int]) -> float:
    """Share of pixels in the rectangle that are not the white background."""
    import numpy as np
    from PIL import Image

    x, y, w, h = rect
    pixels = np.asarray(Image.open(png).convert("RGB").crop((x, y, x + w, y + h)))
    return float((pixels.min(axis=2) < 235).mean()) if pixels.size else 0.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("runs")
    cache = str(tmp / "cache")
    common = ["--benchmark", "helpsteer2", "--data", str(shared_data), "--scorer", "ridge",
              "--cache", cache]
    assert main(["sweep", *common, "--out", str(tmp / "hs2-ridge")]) == 0
    groups = Path(__file__).resolve().parents[2] / "docs" / "examples" / "helpsteer2_groups.json"
    assert main(["jury", *common, "--groups", str(groups), "--alpha", "0,1,2,inf",
                 "--bootstrap", "200", "--out", str(tmp / "jury")]) == 0
    assert main(["spica", "evaluate", "--bank", "synthetic:0", "--bootstrap", "200",
                 "--out", str(tmp / "spica.json")]) == 0
    return {"hs2-ridge": tmp / "hs2-ridge", "jury": tmp / "jury", "spica": tmp / "spica.json"}


def test_console_capture_sees_errors(tmp_path: Path) -> None:
    """The check below can fail: a page that logs an error is caught."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('planted-error')</script></body></html>")
    out = _chromium(tmp_path, bad.as_uri(), "--dump-dom")
    assert any("planted-error" in line for line in _console_lines(out.stderr))


@needs_chromium
def test_report_renders_every_figure_with_the_summary_numbers(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    assert main(["report", *map(str, runs.values()), "--out", str(page)]) == 0
    text = page.read_text()
    # nothing the page would load: no src/href to another resource, no CSS url(), no <link>
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)|url\((?!#)|<link""", text)

    dom = _chromium(tmp_path, page.as_uri(), f"--window-size={WIDTH},900", "--dump-dom")
    assert _console_lines(dom.stderr) == []
    parsed = _Page()
    parsed.feed(dom.stdout)
    n_ok, n_all = (int(v) for v in parsed.figures.split("/"))
    # side-by-side accuracy + regression, polar targets, jury bars + welfare, SPICA errors
    assert n_all >= 6 and n_ok == n_all

    height = max(y + h for _, (_, y, _, h) in parsed.rects) + 40
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, page.as_uri(), f"--window-size={WIDTH},{height}",
              f"--screenshot={shot}")
    for title, rect in parsed.rects:
        assert rect[2] > 100 and rect[3] > 100, title
        ink = _ink(shot, rect)
        print(f"figure {title!r}: {rect[2]}x{rect[3]} px, {ink:.1%} drawn")
        assert ink > 0.02, f"figure {title!r} looks blank"
    blank = (WIDTH - 40, 0, 30, height)  # the right margin: the check sees white as blank
    assert _ink(shot, blank) < 0.01

    checked = 0
    for label, path in runs.items():
        summary = json.loads((path / "summary.json" if path.is_dir() else path).read_text())
        cells = {k: v for (run, k), v in parsed.cells.items() if run == label}
        assert cells, label
        for key, (exact, shown) in cells.items():
            if key.startswith(("seconds/", "manifest/")):
                continue
            want = _lookup(summary, key)
            if want is None:
                assert shown == "—", key
                continue
            assert float(exact) == float(want), key  # type: ignore[arg-type]
            digits = len(shown.split(".")[1]) if "." in shown else 0
            assert shown == (f"{float(want):.{digits}f}" if isinstance(want, float)
                             else str(want)), key
            checked += 1
    sweep = json.loads((runs["hs2-ridge"] / "summary.json").read_text())
    means = {s["name"]: s["mean"] for s in sweep["sets"]}
    assert not math.isnan(means["all"])
    assert parsed.cells[("hs2-ridge", "sets/all/mean")][0] == repr(means["all"])
    print(f"{checked} shown numbers equal summary.json")
    assert checked >= 40
    _check_fig8_intervals(parsed, runs["hs2-ridge"], sweep)
    assert "standard error" in dom.stdout and "standard deviation over targets" not in dom.stdout


def _check_fig8_intervals(parsed: _Page, run: Path, summary: dict) -> None:
    """Fig. 8's intervals are the standard error of the mean (engine/align/per_scenario.py's rule),
    recomputed here from the run's per_target.parquet; the means are summary.json's."""
    import numpy as np
    import pyarrow.parquet as pq

    from pluralign.engine.align.per_scenario import standard_error

    table = pq.read_table(run / "per_target.parquet").to_pandas()
    shown = {k.split(":fig8/", 1)[1]: v for (r, k), v in parsed.cells.items()
             if r is None and k.startswith(f"{run.name}:fig8/")}
    n_checked = 0
    for s in summary["sets"]:
        for k, point in (s.get("by_n_attributes") or {}).items():
            sel = table[(table["set"] == s["name"]) & (table["n_attributes"] == int(k))]
            acc = sel["accuracy"].to_numpy(dtype=float, na_value=np.nan)
            want = standard_error(acc)
            exact, text = shown[f"{s['name']}/{k}/se"]
            if want is None:
                assert exact == "" and text == "—"
                continue
            assert float(exact) == want
            assert float(shown[f"{s['name']}/{k}/mean"][0]) == point["mean"]
            assert int(shown[f"{s['name']}/{k}/targets"][0]) == point["targets"]
            if point["targets"] > 4:  # the error of the mean is well below the spread
                assert want < point["std"]
            n_checked += 1
    assert n_checked >= 5


def test_report_degrades_without_tables_and_draws_implicit_bias(tmp_path: Path) -> None:
    """A summary alone still reports (with a note); an unaligned run's implicit bias is drawn."""
    from pluralign.jobs.report import build_report

    run = tmp_path / "unaligned"
    run.mkdir()
    bias = {"helpfulness": 0.7, "verbosity": 0.45, "coherence": 0.9}
    (run / "summary.json").write_text(json.dumps({
        "benchmark": "b", "scorer": "unaligned#x", "implicit_bias": bias,
        "sets": [{"name": "high", "n_targets": 1, "n_defined": 1, "mean": 61.5, "std": 0.0,
                  "by_n_attributes": {"3": {"mean": 61.5, "std": 0.0, "targets": 1}}}]}))
    page = build_report([run])
    assert "unaligned: implicit bias" in page and "no per_target.parquet" in page
    assert 'data-key="sets/high/mean" data-value="61.5"' in page
    # one target: no standard error (and no interval drawn)
    assert 'data-key="unaligned:fig8/high/3/se" data-value=""' in page


def test_fig8_error_without_a_table_comes_from_the_summary_std(tmp_path: Path) -> None:
    """No per_target.parquet: the standard error is std * sqrt(n / (n - 1)) / sqrt(n)."""
    from pluralign.jobs.report import Run, attribute_points

    by = {"1": {"mean": 60.0, "std": 3.0, "targets": 4},
          "2": {"mean": 55.0, "std": 0.0, "targets": 1}}
    run = Run("r", "sweep", {"sets": [{"name": "all", "by_n_attributes": by}]})
    points = attribute_points(run)["all"]
    assert points[1] == (60.0, 3.0 * math.sqrt(4 / 3) / 2, 4)
    assert points[2] == (55.0, None, 1)
    # and with the table, the rule over its accuracies (NaN: undefined targets left out)
    import pandas as pd

    run.per_target = pd.DataFrame({"set": ["all"] * 5, "n_attributes": [1, 1, 1, 1, 2],
                                   "accuracy": [50.0, 60.0, 70.0, float("nan"), 55.0]})
    assert attribute_points(run)["all"][1][1] == 10.0 / math.sqrt(3)  # stdev 10 over sqrt 3


def test_report_of_a_folder_that_is_no_run_is_one_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    rc = main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "empty" in err[0] and "summary.json" in err[0]
    assert not (tmp_path / "r.html").exists()


# -- input handling, names drawn as text, the drill-down, comparability -------------------

def _sweep_summary(**over: object) -> dict:
    row = {"name": "all", "n_targets": 2, "n_defined": 2, "mean": 60.0, "std": 1.0,
           "weighted_mean": 20.0, "by_n_attributes": {"1": {"mean": 60.0, "std": 1.0,
                                                            "targets": 2}}}
    return {"benchmark": "b@1", "split": "eval", "scenarios": 3, "scorer": "s#1",
            "sets": [row], **over}


@pytest.mark.parametrize("summary", [
    [1, 2],
    _sweep_summary(sets={"all": 1}),
    _sweep_summary(sets=["all"]),
    _sweep_summary(sets=[{"name": "all", "mean": "high"}]),
    _sweep_summary(sets=[{"name": "all", "by_n_attributes": [1, 2]}]),
    _sweep_summary(regression={"helpfulness": 0.1}),
    _sweep_summary(seconds=[1]),
    _sweep_summary(scenarios="many"),
    {"gaps": {}, "groups": ["g1"]},
    {"gaps": {}, "groups": [{"group": "g", "accuracy": 50}], "config": {"alphas": "0,1"}},
    {"gaps": {"accuracy": 3}, "groups": [{"group": "g"}]},
    {"bank": "x", "groups": [{"group": "g", "baseline": 1.0, "spica": 1.0, "gain": 0.0}]},
])
def test_a_summary_of_an_unexpected_shape_is_one_line(tmp_path: Path, summary: object,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "summary.json" in err[0], err
    assert "TypeError" not in err[0] and "AttributeError" not in err[0]
    assert not out.exists()


def test_names_are_drawn_as_text_and_no_legend_entry_is_dropped(tmp_path: Path) -> None:
    """A run folder and groups named like mathtext, and a group starting with '_'."""
    from pluralign.jobs.report import build_report

    groups = [{"group": name, "n_jurors": 2, "accuracy": 50.0 + i, "closeness": 0.5,
               "welfare_a0": 0.4 + 0.1 * i, "welfare_a1": 0.3}
              for i, name in enumerate(["$x^2$", "_hidden", "$\\frac{a}{b}$"])]
    jury = tmp_path / "$jury$"
    jury.mkdir()
    (jury / "summary.json").write_text(json.dumps(
        {"benchmark": "b@1", "groups": groups, "gaps": {}, "config": {"alphas": [0, 1]}}))
    sweep = tmp_path / "$\\alpha$ run"
    sweep.mkdir()
    (sweep / "summary.json").write_text(json.dumps(_sweep_summary(
        sets=[{**_sweep_summary()["sets"][0], "by_n_attributes": {
            "1": {"mean": 60.0, "std": 1.0, "targets": 2},
            "2": {"mean": 55.0, "std": 1.0, "targets": 2}}}])))
    page = build_report([sweep, jury])
    for name in ("$x^2$", "$\\frac{a}{b}$", "$\\alpha$ run: all"):
        assert html.escape(name) in page or name in page, name
    assert "\u200b_hidden" in page  # the legend keeps the entry matplotlib would drop
    welfare = page[page.index("welfare vs α"):]
    assert welfare.count("_hidden") >= 1


def test_drilldown_embeds_every_scenario_and_opens_in_a_browser(tmp_path: Path) -> None:
    import base64
    import gzip

    from pluralign.jobs.runs import load_sweep
    from tests.jobs.sweep_runs import sweep

    run = sweep(tmp_path, "random", "random")
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    text = out.read_text()
    m = re.search(r'<script type="application/octet-stream" id="drill-0"[^>]*>([^<]+)</script>',
                  text)
    assert m
    data = json.loads(gzip.decompress(base64.b64decode(m.group(1))))
    loaded = load_sweep(run)
    assert [s["id"] for s in data["scenarios"]] == [s.id for s in loaded.bench.scenarios]
    assert loaded.predictions is not None
    first = data["scenarios"][0]
    assert first["predictions"][0] == [round(float(v), 4) for v in loaded.predictions[0]]
    assert {s["name"] for s in data["sets"]} == {"random-sampled", "high", "low"}
    no_drill = tmp_path / "plain.html"
    assert main(["report", str(run), "--out", str(no_drill), "--no-drilldown"]) == 0
    assert "drill-0" not in no_drill.read_text()
    sync_api = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(out.as_uri())
        assert page.locator(".drill-list").count() == 0  # nothing decoded before it is opened
        page.click("button[data-open='0']")
        page.wait_for_selector(".drill-list tr[data-scenario]")
        assert page.locator(".drill-list tr[data-scenario]").count() == 24
        page.fill(".drill input[type=search]", loaded.bench.scenarios[5].id)
        assert page.locator(".drill-list tr[data-scenario]").count() == 1
        page.click(".drill-list a")
        assert page.inner_text(".drill-detail h4") == loaded.bench.scenarios[5].id
        browser.close()
    assert errors == []


def test_runs_that_are_not_comparable_are_refused(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from tests.jobs.sweep_runs import sweep

    a, short = sweep(tmp_path, "a", "random"), sweep(tmp_path, "short", "random", limit=6)
    out = tmp_path / "r.html"
    capsys.readouterr()
    assert main(["report", str(a), str(short), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not comparable" in err[0] and "scenarios 6 vs 24" in err[0]
    assert not out.exists()


def test_two_sweeps_are_compared_paired(tmp_path: Path) -> None:
    from pluralign.jobs.compare import compare
    from pluralign.jobs.report import build_report
    from tests.jobs.sweep_runs import sweep

    a, b = sweep(tmp_path, "a", "random"), sweep(tmp_path, "b", "oracle")
    page = build_report([a, b], bootstrap=100, drilldown=False)
    want = compare(a, b, bootstrap=100)
    shown = [float(v) for v in re.findall(r'data-paired="acc" data-value="([^"]+)"', page)]
    assert shown == [s.accuracy_diff for s in want.sets]
    assert "Paired comparison: A = a" in page and "drill-0" not in page
