"""Slider to repaint in ``pluralign view``: how long from moving one attribute's slider to the
repainted metrics, table and choices, in a real headless Chromium (Playwright).

Two runs are swept into a temporary cache: a MIC-shaped synthetic benchmark (336 scenarios of
2-4 responses, 6 attributes on 7 levels: 117,649 targets in ``all``) and, when the published
data is at hand ($PLURALIGN_DATA), HelpSteer2's eval split with ridge (3,125 targets). For
each, the viewer is opened and sliders are moved ``--moves`` times, one move at a time; the page
records performance.now() from the input event to the animation frame after the repaint. The
server's own /api/align time is measured beside it (plain HTTP, same targets).

Run: ``python benchmarks/view.py [--moves 60]``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from pluralign.engine.store.manifest import begin, end
from pluralign.jobs.configs import SplitConfig
from pluralign.jobs.sweep import SweepConfig, run_sweep
from pluralign.jobs.view.data import ViewData
from pluralign.jobs.view.server import start

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def sweep(tmp: Path, name: str, benchmark: str, scorer: str) -> Path:
    out = tmp / name
    begin("sweep", ["pluralign", "sweep", "--benchmark", benchmark, "--scorer", scorer,
                    "--out", str(out), "--cache", str(tmp / "cache")])
    try:
        run_sweep(SweepConfig(out=str(out), scorer=scorer, splits=SplitConfig(
            benchmark=benchmark, cache=str(tmp / "cache"))))
    finally:
        end()
    return out


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def server_align_ms(url: str, targets: list[dict[str, float]]) -> list[float]:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "", u.port, timeout=60)
    out = []
    for t in targets:
        t0 = time.perf_counter()
        conn.request("GET", "/api/align?run=0&target=" + quote(json.dumps(t)))
        r = conn.getresponse()
        r.read()
        out.append(1000 * (time.perf_counter() - t0))
    conn.close()
    return out


def browser_moves(url: str, moves: int, chromium: str) -> tuple[list[float], int]:
    """Slider-to-repaint times (ms) of ``moves`` single moves, and the attributes moved."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("body[data-ready='1'][data-aligned]")
        attrs = page.locator("#sliders input[type=range]").evaluate_all(
            "xs => xs.map(x => [x.dataset.attribute, Number(x.max)])")
        base = len(page.evaluate("window.__pluralign.timings"))
        for i in range(moves):
            name, top = attrs[i % len(attrs)]
            value = (i // len(attrs)) % (top + 1)
            current = page.locator(f"#slider-{name}").input_value()
            if str(value) == current:
                value = (value + 1) % (top + 1)
            page.fill(f"#slider-{name}", str(value))
            deadline = time.monotonic() + 30
            while len(page.evaluate("window.__pluralign.timings")) < base + i + 1:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"move {i} was not repainted")
                time.sleep(0.005)
        timings = page.evaluate("window.__pluralign.timings")[base:]
        browser.close()
        if errors:
            raise RuntimeError(f"page errors: {errors}")
    return [float(t) for t in timings], len(attrs)


def measure(name: str, run: Path, moves: int, chromium: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    data = ViewData([run])
    load_s = time.perf_counter() - t0
    targets = int(sum(s["n_targets"] for s in data.runs[0].run.summary["sets"]
                      if s["name"] == "all"))
    server, url = start(data, port=0)
    try:
        info = data.runs_info()["runs"][0]
        levels = info["levels"]
        probe = [{a: levels[(i + j) % len(levels)] for j, a in enumerate(info["attributes"])}
                 for i in range(moves)]
        api = server_align_ms(url, probe)
        page, n_attrs = browser_moves(url, moves, chromium)
    finally:
        server.shutdown()
        server.server_close()
    row = {"run": name, "targets_in_all": targets, "scenarios": info["scenarios"],
           "attributes": n_attrs, "load_s": round(load_s, 2), "moves": len(page),
           "slider_to_repaint_p50_ms": round(statistics.median(page), 1),
           "slider_to_repaint_p90_ms": round(pct(page, 0.9), 1),
           "slider_to_repaint_max_ms": round(max(page), 1),
           "api_align_p50_ms": round(statistics.median(api), 1),
           "api_align_p90_ms": round(pct(api, 0.9), 1)}
    print(f"{name:<28} targets {targets:>7}  load {load_s:5.2f} s  slider→repaint p50 "
          f"{row['slider_to_repaint_p50_ms']:6.1f} ms  p90 {row['slider_to_repaint_p90_ms']:6.1f}"
          f" ms  (/api/align p50 {row['api_align_p50_ms']:.1f} ms)", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--moves", type=int, default=60)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("needs chromium (and pip install playwright)")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        runs = [("mic-shaped synthetic oracle", sweep(tmp, "mic", "synthetic", "oracle"))]
        data = os.environ.get("PLURALIGN_DATA")
        if data and (Path(data) / "helpsteer2" / "train.json").is_file():
            runs.append(("helpsteer2 eval ridge", sweep(tmp, "hs2", "helpsteer2", "ridge")))
        for name, run in runs:
            rows.append(measure(name, run, args.moves, chromium))
    print(json.dumps({"benchmark": "view", "moves": args.moves, "runs": rows}))


if __name__ == "__main__":
    main()
