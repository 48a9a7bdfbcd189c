"""``pluralign view`` in a real headless Chromium driven by Playwright: the page opens on real
runs, a slider re-aligns the target, a scenario opens, two runs are compared; the numbers on the
page equal summary.json, ``pluralign align`` and ``pluralign compare``; no console errors; every
view's screenshot is non-blank. Skipped where chromium or playwright is missing."""

from __future__ import annotations

import io
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluralign.engine.align.realign import chosen_responses
from pluralign.engine.data.targets import from_dicts
from pluralign.jobs.cli import main
from pluralign.jobs.compare import compare
from pluralign.jobs.runs import load_sweep
from pluralign.jobs.view.data import ViewData
from pluralign.jobs.view.server import start
from tests.jobs.sweep_runs import summary
from tests.jobs.view_fixtures import viewer_runs

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
              pytest.mark.slow]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return viewer_runs(tmp_path_factory.mktemp("viewer"))


@pytest.fixture(scope="module")
def url(runs: list[Path]) -> Iterator[str]:
    server, address = start(ViewData(runs, bootstrap=200), port=0)
    yield address
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, url: str) -> Iterator[Any]:
    """A page of the viewer, loaded; fails the test on any console error or page error."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("request", lambda r: errors.append(f"off-host request {r.url}")
          if not r.url.startswith(url) else None)
    pg.goto(url)
    pg.wait_for_selector("body[data-ready='1'][data-aligned]")
    yield pg
    context.close()
    assert errors == []


def _non_blank(png: bytes) -> None:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("L")
    lo, hi = img.getextrema()
    assert hi - lo > 100, "the screenshot is blank"
    assert len(img.histogram()) and sum(1 for c in img.histogram() if c) > 20


def _shot(page: Any, tmp_path: Path, name: str) -> None:
    png = page.screenshot(full_page=False)
    (tmp_path / f"{name}.png").write_bytes(png)
    _non_blank(png)


def _until(check: Any, seconds: float = 20.0) -> None:
    """Poll ``check`` from Python (the page's CSP forbids Playwright's string predicates)."""
    end = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < end, "the page did not get there in time"
        time.sleep(0.02)


def _value(page: Any, selector: str) -> float:
    return float(page.get_attribute(selector, "data-value"))


def _align_cli(run: Path, target: dict[str, float], capsys: pytest.CaptureFixture[str]
               ) -> tuple[float, int, int]:
    """(accuracy, correct, counted) as ``pluralign align`` prints them for ``target``."""
    s = summary(run)
    argv = s["manifest"]["argv"]
    kept = ("--benchmark", "--limit", "--cache", "--scorer")
    flags = [a for i, a in enumerate(argv) if i >= 2 and (a in kept or argv[i - 1] in kept)]
    inline = ",".join(f"{k}={v}" for k, v in target.items())
    capsys.readouterr()
    assert main(["align", *flags, "--targets", inline]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    m = re.search(r"accuracy ([\d.]+)\s+\((\d+)/(\d+)\)", line)
    assert m, line
    return float(m.group(1)), int(m.group(2)), int(m.group(3))


def test_explorer_slider_equals_summary_and_align(page: Any, runs: list[Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    s = summary(runs[0])
    for row in s["sets"]:  # the run summary beside the sliders is summary.json
        cell = f"#run-sets tr[data-set='{row['name']}'] td[data-key=mean]"
        assert _value(page, cell) == pytest.approx(row["mean"], abs=1e-9)
    high = next(r for r in s["sets"] if r["name"] == "high")
    assert _value(page, "#metric-accuracy") == pytest.approx(high["mean"], abs=1e-9)
    _shot(page, tmp_path, "explorer")

    run = load_sweep(runs[0], predictions=False)
    attrs, levels = run.bench.attributes, run.bench.levels
    page.fill(f"#slider-{attrs[1]}", "0")  # the second attribute to its lowest level
    target = {a: 1.0 for a in attrs} | {attrs[1]: float(levels[0])}
    page.wait_for_selector(f"body[data-aligned='{json.dumps(target)}']")
    accuracy, correct, counted = _align_cli(runs[0], target, capsys)
    assert page.inner_text("#metric-correct") == str(correct)
    assert page.inner_text("#metric-counted") == str(counted)
    assert round(_value(page, "#metric-accuracy"), 1) == accuracy
    assert "all:" in page.inner_text("#in-run")  # a target of the grid: the run's own row
    timings = page.evaluate("window.__pluralign.timings")
    assert len(timings) >= 2 and all(t > 0 for t in timings)
    _shot(page, tmp_path, "explorer-moved")


def test_table_filters_search_and_scenario_page(page: Any, runs: list[Path],
                                                tmp_path: Path) -> None:
    run = load_sweep(runs[0])
    assert run.predictions is not None
    rows = page.locator("#scenario-table tbody tr")
    assert rows.count() == min(100, run.bench.n_scenarios)
    _shot(page, tmp_path, "table")
    page.select_option("#f-outcome", "wrong")
    page.wait_for_timeout(50)
    wrong = rows.count()
    assert all(t == "✗ wrong" for t in page.locator(
        "#scenario-table td[data-key=outcome]").all_inner_texts())
    page.select_option("#f-outcome", "")
    sc = run.bench.scenarios[7]
    needle = sc.prompt[:40].lower()
    expected = [x.id for x in run.bench.scenarios
                if needle in " ".join([x.id, x.prompt, *x.responses]).lower()]
    page.fill("#f-text", sc.prompt[:40])
    _until(lambda: rows.count() == min(len(expected), 100))
    shown = page.locator("#scenario-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.scenario)")
    assert shown == expected[:100] and 0 < wrong < run.bench.n_scenarios

    page.click(f"#scenario-table tr[data-scenario='{sc.id}'] a")
    page.wait_for_selector("#scenario-id")
    assert page.inner_text("#scenario-id") == sc.id
    assert page.inner_text(".prompt-full") == sc.prompt
    lo = int(run.bench.offsets[7])
    for r in range(len(sc.responses)):
        card = f"article[data-response='{r}']"
        for j, a in enumerate(run.bench.attributes):
            cells = page.locator(f"{card} tr[data-attribute='{a}'] td")
            assert float(cells.nth(0).inner_text()) == pytest.approx(
                run.bench.labels[lo + r, j], abs=0.005)
            assert float(cells.nth(1).inner_text()) == pytest.approx(
                run.predictions[lo + r, j], abs=0.0005)
    chosen = page.evaluate("window.__pluralign.state.aligned.chosen[7]")
    assert page.locator("article.is-chosen").get_attribute("data-response") == str(chosen)
    page.locator("article details").first.click()
    _shot(page, tmp_path, "scenario")


def test_two_runs_side_by_side(page: Any, runs: list[Path], tmp_path: Path) -> None:
    page.click("[data-tab=compare]")
    page.wait_for_selector("#compare-sets tbody tr")
    want = compare(runs[0], runs[1], bootstrap=200)
    for s in want.sets:
        row = f"#compare-sets tr[data-set='{s.set}']"
        assert _value(page, f"{row} td[data-key=accuracy_a]") == pytest.approx(s.accuracy_a)
        assert _value(page, f"{row} td[data-key=accuracy_b]") == pytest.approx(s.accuracy_b)
        assert _value(page, f"{row} td[data-key=accuracy_diff]") == pytest.approx(s.accuracy_diff)
    by_set = {r["name"]: r["mean"] for r in summary(runs[1])["sets"]}
    assert want.sets[0].accuracy_b == pytest.approx(by_set[want.sets[0].set])
    ra, rb = load_sweep(runs[0]), load_sweep(runs[1])
    assert ra.predictions is not None and rb.predictions is not None
    ts = from_dicts("t", ra.bench.attributes,
                    [json.loads(page.get_attribute("body", "data-aligned"))])
    differ = int((chosen_responses(ra.bench, ra.predictions, ts)
                  != chosen_responses(rb.bench, rb.predictions, ts)).sum())
    assert page.locator("#compare-differ tbody tr").count() == min(differ, 200)
    _shot(page, tmp_path, "compare")
