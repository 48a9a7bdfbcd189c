"""``pluralign serve`` answers ``GET /`` with the viewer's page (no token needed for the page,
which holds no data; the data routes still need it), and the page drives the service."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluralign.engine.data.sources import load_benchmark
from pluralign.engine.scorers import get_scorer, score_through_cache
from pluralign.engine.store.cache import ScoreCache
from pluralign.jobs.view import static_files

pytest.importorskip("uvicorn")
TOKEN = "view-serve-token"
BENCH = "synthetic:S=12,seed=2"


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from pluralign.jobs.serve.http import serve_local
    from pluralign.jobs.serve.query import Limits, QueryService

    root = tmp_path_factory.mktemp("serve-view")
    score_through_cache(get_scorer("random", seed=1), load_benchmark(BENCH, "eval"),
                        ScoreCache(root))
    service = QueryService(root, None, limits=Limits(max_synthetic_scenarios=100))
    stop, ready = threading.Event(), threading.Event()
    urls: list[str] = []

    def on_ready(url: str) -> None:
        urls.append(url)
        ready.set()

    with socket.socket() as sock:  # a free port (uvicorn does not report the one it took)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    thread = threading.Thread(target=serve_local, args=(service, TOKEN, "127.0.0.1", port),
                              kwargs={"stop": stop, "on_ready": on_ready}, daemon=True)
    thread.start()
    assert ready.wait(30), "the service did not start"
    yield urls[0]
    stop.set()
    thread.join(timeout=20)


def _get(url: str, path: str, token: str | None = None) -> tuple[int, bytes, str]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body, r.getheader("content-type") or ""


def test_get_root_is_the_viewer_page(service_url: str) -> None:
    for path, (content, kind) in static_files().items():
        status, body, got = _get(service_url, path)
        assert status == 200 and body == content and got.split(";")[0] == kind.split(";")[0]
    assert _get(service_url, "/v1/scorers")[0] == 401  # the data still needs the token
    assert _get(service_url, "/v1/scorers", TOKEN)[0] == 200
    assert _get(service_url, "/static/nothing.js")[0] == 404


@pytest.mark.slow
def test_the_page_drives_the_service(service_url: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed")
    errors: list[Any] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(service_url + "/")
        page.wait_for_selector("body[data-ready=service]")
        page.fill("#svc-token", TOKEN)
        page.fill("#svc-query", json.dumps({"benchmark": BENCH, "scorer": "random", "seed": 1,
                                            "targets": ["high"]}))
        page.click("#svc-align")
        page.wait_for_selector("#svc-result:has-text('accuracy')")
        assert "accuracy" in page.inner_text("#svc-result")
        page.screenshot(path=str(tmp_path / "service.png"))
        browser.close()
    assert errors == []
