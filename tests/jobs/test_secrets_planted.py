"""Planted secrets (a URL password, a URL query key, a credential inside ``--extra-body`` and the
API key) appear in no file a sweep writes (run folder, cache, Parquet metadata) and nowhere on
stdout, stderr or the log: on the connection-refused path, the 401 path and a successful path,
through the real command line against the fake server."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pluralign.engine.store.redaction import safe_url
from pluralign.jobs.cli import main
from tests.fake_openai import FAKE_KEY, FAKE_KEY_ENV, fake_key, free_port, make_fake_server

__all__ = ["fake_key", "make_fake_server"]

URL_PASSWORD = "pw-planted-0a1b2c3d"
QUERY_KEY = "qk-planted-4e5f6a7b"
BODY_KEY = "bk-planted-8c9d0e1f"
PLANTED = (URL_PASSWORD, QUERY_KEY, BODY_KEY, FAKE_KEY)
EXTRA_BODY = json.dumps({"metadata": {"api_key": BODY_KEY, "note": "kept"}, "top_p": 0.9})
BENCH = "synthetic:S=4,A=2,L=5,seed=3"


def sweep(tmp: Path, base_url: str, key_env: str) -> list[str]:
    return ["sweep", "--benchmark", BENCH, "--scorer", "comparative-regression", "--zero-shot",
            "--backend", "openai", "--base-url", base_url, "--model", "fake", "--no-ray",
            "--api-key-env", key_env, "--max-retries", "1", "--request-timeout", "5",
            "--extra-body", EXTRA_BODY, "--cache", str(tmp / "cache"), "--out",
            str(tmp / "run")]


def written_texts(root: Path) -> list[str]:
    """Every file under ``root`` as text (bytes decoded leniently), and every Parquet file's
    rows and schema metadata decoded (column data may be compressed)."""
    texts = []
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        texts.append(f.read_bytes().decode("utf-8", "replace"))
        if f.suffix == ".parquet":
            texts.append(str(pq.read_schema(f).metadata))
            texts.append(json.dumps(pq.read_table(f).to_pylist(), default=str))
    return texts


def hits(texts: list[str]) -> int:
    return sum(t.count(s) for t in texts for s in PLANTED)


def run_and_grep(tmp: Path, capsys: Any, caplog: Any, base_url: str, key_env: str,
                 rc: int) -> dict[str, Any]:
    """Run the sweep; assert its exit status and 0 planted secrets anywhere; the summary."""
    caplog.set_level(logging.DEBUG)
    assert main(sweep(tmp, base_url, key_env)) == rc
    out = capsys.readouterr()
    texts = [out.out, out.err, caplog.text, *written_texts(tmp)]
    found = hits(texts)
    with capsys.disabled():
        print(f"\n  {safe_url(base_url)} -> exit {rc}, {len(texts) - 3} texts of written "
              f"files, planted secrets found: {found}")
    assert found == 0
    assert any((tmp / "cache").rglob("*.parquet")) or rc != 0
    return dict(json.loads((tmp / "run" / "summary.json").read_text()))


def test_connection_refused_path(tmp_path: Path, capsys: Any, caplog: Any,
                                 fake_key: str) -> None:
    port = free_port()
    summary = run_and_grep(tmp_path, capsys, caplog,
                           f"http://127.0.0.1:{port}/v1?api_key={QUERY_KEY}", FAKE_KEY_ENV, 2)
    assert "connection refused" in summary["stopped"]
    assert "[redacted]" in summary["stopped"] and "[redacted]" in summary["scoring"]["stopped"]


def test_connection_refused_with_a_url_password(tmp_path: Path, capsys: Any,
                                                caplog: Any) -> None:
    port = free_port()
    summary = run_and_grep(tmp_path, capsys, caplog,
                           f"http://user:{URL_PASSWORD}@127.0.0.1:{port}/v1", "none", 2)
    assert "connection refused" in summary["stopped"]


def test_401_path(tmp_path: Path, capsys: Any, caplog: Any, make_fake_server: Any) -> None:
    server = make_fake_server()  # wants a bearer key; a URL password is basic auth
    base = server.url.replace("http://", f"http://user:{URL_PASSWORD}@")
    summary = run_and_grep(tmp_path, capsys, caplog, base, "none", 2)
    assert "HTTP 401" in summary["stopped"]
    assert server.stats()["by_status"].get("401", 0) > 0


def test_401_path_with_a_query_key_and_an_api_key(tmp_path: Path, capsys: Any, caplog: Any,
                                                  fake_key: str,
                                                  make_fake_server: Any) -> None:
    server = make_fake_server(force_status=401)
    summary = run_and_grep(tmp_path, capsys, caplog, f"{server.url}?api_key={QUERY_KEY}",
                           FAKE_KEY_ENV, 2)
    assert "HTTP 401" in summary["stopped"]


@pytest.mark.parametrize("auth", ["url-password", "query-key-and-api-key"])
def test_successful_path(tmp_path: Path, capsys: Any, caplog: Any, fake_key: str,
                         make_fake_server: Any, auth: str) -> None:
    if auth == "url-password":
        server = make_fake_server(require_auth=False)
        base, env = server.url.replace("http://", f"http://user:{URL_PASSWORD}@"), "none"
    else:  # the chat route goes before the query: the server answers, not 404
        server = make_fake_server()
        base, env = f"{server.url}?api_key={QUERY_KEY}", FAKE_KEY_ENV
    summary = run_and_grep(tmp_path, capsys, caplog, base, env, 0)
    assert server.stats()["by_status"] == {"200": server.stats()["total"]}
    settings = summary["manifest"]["scorer"]["settings"]
    assert json.loads(settings["extra_body"]) == {
        "metadata": {"api_key": "[redacted]", "note": "kept"}, "top_p": 0.9}


@pytest.mark.parametrize(("base_url", "key_env", "needle"), [
    ("notaurl", "none", "not an http(s) URL with a host"),
    ("file:///etc/passwd", "none", "not an http(s) URL with a host"),
    (f"http://user:{URL_PASSWORD}@127.0.0.1:9/v1", FAKE_KEY_ENV, "--api-key-env to none"),
    (f"http://user:{URL_PASSWORD}@127.0.0.1:9/v1?x=1", "none", "a password and a query"),
])
def test_bad_base_urls_are_refused_before_any_work(tmp_path: Path, capsys: Any,
                                                   fake_key: str, base_url: str,
                                                   key_env: str, needle: str) -> None:
    assert main(sweep(tmp_path, base_url, key_env)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    with capsys.disabled():
        print(f"\n    -> {lines[-1] if lines else err!r}")
    assert len(lines) == 1 and needle in lines[0] and "--base-url" in lines[0], err
    assert hits([err]) == 0
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.parquet"))
