"""``pluralign view``'s server over HTTP (no browser): its answers equal the re-alignment and
the run files, the page and scripts come from the package, and the token and Host rules hold."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np
import pytest

from pluralign.engine.align.realign import chosen_responses, realign
from pluralign.engine.data.targets import from_dicts
from pluralign.engine.errors import InputError, PluralignError
from pluralign.jobs.runs import load_sweep
from pluralign.jobs.view import static_files
from pluralign.jobs.view.data import ViewData
from pluralign.jobs.view.server import start
from tests.jobs.sweep_runs import summary, sweep


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("view")
    return [sweep(tmp, "random", "random"), sweep(tmp, "oracle", "oracle")]


@pytest.fixture(scope="module")
def served(runs: list[Path]) -> Any:
    server, url = start(ViewData(runs, bootstrap=50), port=0)
    yield url
    server.shutdown()
    server.server_close()


def _get(url: str, path: str, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "", u.port, timeout=30)
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def _json(url: str, path: str) -> Any:
    status, _, body = _get(url, path)
    assert status == 200, body
    return json.loads(body)


def test_align_equals_the_realignment(runs: list[Path], served: str) -> None:
    run = load_sweep(runs[0])
    assert run.predictions is not None
    a0, a1 = run.bench.attributes[:2]
    target = {a0: 1.0, a1: 0.0}
    got = _json(served, "/api/align?run=0&target=" + quote(json.dumps(target)))
    ts = from_dicts("t", run.bench.attributes, [target])
    want = realign(run.bench, run.predictions, ts, weighted=True)
    assert (got["correct"], got["counted"]) == (int(want.correct[0]), int(want.counted[0]))
    assert got["accuracy"] == pytest.approx(float(want.accuracy[0]), abs=1e-5)
    assert want.weighted is not None
    assert got["weighted_score"] == pytest.approx(float(want.weighted[0]), abs=1e-5)
    assert got["chosen"] == chosen_responses(run.bench, run.predictions, ts)[:, 0].tolist()
    assert got["in_run"]["all"]["correct"] == got["correct"]  # the run's own row


def test_runs_and_tables_equal_the_run_files(runs: list[Path], served: str) -> None:
    info = _json(served, "/api/runs")["runs"]
    for i, run in enumerate(runs):
        s = summary(run)
        assert [x["mean"] for x in info[i]["sets"]] == [x["mean"] for x in s["sets"]]
        assert info[i]["scenarios"] == s["scenarios"] and info[i]["benchmark"] == s["benchmark"]
    table = _json(served, "/api/table?run=1&set=all")
    assert table["targets"] == 125 and {r["set_accuracy"] for r in table["rows"]} <= {100.0, None}
    narrowed = _json(served, "/api/table?run=0&set=all&k=1")
    assert narrowed["targets"] == 3 * 4  # one attribute named: 3 attributes x 4 non-neutral


def test_scenario_holds_labels_predictions_and_samples(runs: list[Path], served: str) -> None:
    run = load_sweep(runs[0])
    sc = run.bench.scenarios[3]
    got = _json(served, f"/api/scenario?run=0&id={sc.id}")
    assert got["prompt"] == sc.prompt and [r["text"] for r in got["responses"]] == list(sc.responses)
    lo = int(run.bench.offsets[3])
    assert run.predictions is not None
    for r in got["responses"]:
        for j, a in enumerate(run.bench.attributes):
            assert r["labels"][a] == run.bench.labels[lo + r["index"], j]
            assert r["predictions"][a] == pytest.approx(run.predictions[lo + r["index"], j])
            assert [d["prediction"] for d in r["samples"] if d["attribute"] == a] == \
                pytest.approx([run.predictions[lo + r["index"], j]])


def test_compare_is_the_paired_comparison(served: str) -> None:
    got = _json(served, "/api/compare?a=0&b=1&target=" + quote("{}"))
    assert got["bootstrap"] == 50 and got["differ"] == []  # the empty target: no choice
    assert all(s["accuracy_b"] == pytest.approx(100.0) for s in got["sets"])


@pytest.mark.parametrize("path", ["/api/align?run=9", "/api/align?run=x", "/api/table?run=0&k=z",
                                  "/api/align?run=0&target=%7Bnope", "/api/scenario?run=0&id=no"])
def test_bad_requests_get_one_line(served: str, path: str) -> None:
    status, _, body = _get(served, path)
    assert status == 400 and "\n" not in json.loads(body)["error"]


def test_page_and_scripts_come_from_the_package(served: str) -> None:
    files = static_files()
    assert {"/", "/static/app.js", "/static/style.css"} <= set(files)
    for path, (content, kind) in files.items():
        status, headers, body = _get(served, path)
        assert status == 200 and body == content and headers["content-type"] == kind
    for js in (p for p in files if p.endswith(".js")):  # nothing reaches the network
        assert b"http://" not in files[js][0] and b"https://" not in files[js][0]
    for path in ("/static/../data.py", "/static/%2e%2e/data.py", "/etc/passwd"):
        assert _get(served, path)[0] == 404


def test_loopback_host_names_only_without_a_token(served: str) -> None:
    assert _get(served, "/api/runs", {"Host": "attacker.example"})[0] == 403


def test_a_token_is_needed_beyond_loopback_and_checked(runs: list[Path]) -> None:
    data = ViewData(runs[:1])
    with pytest.raises(PluralignError, match="beyond loopback"):
        start(data, host="0.0.0.0", port=0)
    server, url = start(data, port=0, token="s3cret-token")
    try:
        assert _get(url, "/api/runs")[0] == 401
        assert _get(url, "/api/runs", {"Authorization": "Bearer wrong"})[0] == 401
        assert _get(url, "/api/runs", {"Authorization": "Bearer s3cret-token"})[0] == 200
        status, headers, _ = _get(url, "/?token=s3cret-token")
        assert status == 303 and headers["location"] == "/"
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"]
        assert _get(url, "/api/runs", {"Cookie": cookie})[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_incomparable_runs_are_refused(runs: list[Path], tmp_path: Path) -> None:
    short = sweep(tmp_path, "short", "random", limit=5)
    with pytest.raises(InputError, match="scenarios 5 vs 24"):
        ViewData([runs[0], short])
    assert np.isfinite(summary(short)["sets"][0]["mean"])


def test_a_jury_file_adds_group_sets_presets_and_comparison_rows(runs: list[Path],
                                                                 tmp_path: Path) -> None:
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"groups": [
        {"name": "g1", "jurors": [{"id": "x", "target": {"a0": 1}},
                                  {"id": "y", "target": {"a1": 0, "a2": 1}}]},
        {"name": "_g2", "jurors": [{"id": "z", "target": {"a2": 0.25}}]}]}))
    data = ViewData(runs, bootstrap=20, groups=str(groups))
    info = data.runs_info()["runs"][0]
    assert {"name": "group: g1", "targets": 2} in info["target_sets"]
    presets = {p["name"]: p["target"] for p in info["presets"]}
    assert presets["group: g1: g1/y"] == {"a1": 0.0, "a2": 1.0}
    assert data.table(0, "group: _g2")["targets"] == 1
    rows = {s["set"]: s for s in data.compare(0, 1, "{}")["sets"]}
    assert rows["group: g1"]["targets"] == 2 and rows["group: g1"]["accuracy_b"] == 100.0


def test_the_job_serves_until_stopped_and_writes_decisions(runs: list[Path]) -> None:
    import threading

    from pluralign.jobs.view.job import ViewConfig, run_view

    stop = threading.Event()
    thread = threading.Thread(target=run_view, args=(ViewConfig(
        runs=(str(runs[0]),), port=0, write_decisions=True),), kwargs={"stop": stop})
    thread.start()
    try:
        deadline = 30.0
        while not (runs[0] / "decisions.parquet").exists() and deadline > 0:
            deadline -= 0.05
            thread.join(0.05)
        assert (runs[0] / "decisions.parquet").exists()
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()


def test_distances_equal_label_distances(runs: list[Path]) -> None:
    from pluralign.engine.align.paired import distances
    from pluralign.engine.align.realign import label_distances
    from pluralign.jobs.compare import run_sets

    run = load_sweep(runs[0])
    for ts in run_sets(run):
        assert np.array_equal(distances(run.bench, ts), label_distances(run.bench, ts))
