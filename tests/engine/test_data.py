"""Data location, loading benchmarks by name, published targets and the first-use download."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import warnings
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pluralign.engine.data import sources as data
from pluralign.engine.data.benchmark import HELPSTEER2_ATTRIBUTES, MIC_ATTRIBUTES
from pluralign.engine.data.loaders import StratificationWarning, load_mic_csv, write_steerable_json
from pluralign.engine.data.sources import (
    DownloadError,
    download_helpsteer2,
    load_benchmark,
    parse_synthetic,
    published_targets,
    resolve_data_dir,
    user_data_dir,
)
from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.errors import DataNotFoundError, InputError
from tests.engine.test_loaders import random_mic_rows, write_mic_csv

# ---------------------------------------------------------------- helpers


class _Server:
    """A real HTTP server on 127.0.0.1 serving one folder, counting requests."""

    def __init__(self, root: Path) -> None:
        self.paths: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                server.paths.append(self.path)
                super().do_GET()

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[_Server] = []

    def start(root: Path) -> _Server:
        servers.append(_Server(root))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No data anywhere: user data dir under tmp, no PLURALIGN_* variables."""
    for var in ("PLURALIGN_DATA", "PLURALIGN_OFFLINE", "PLURALIGN_HELPSTEER2_URL"):
        monkeypatch.delenv(var, raising=False)
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
    return xdg / "pluralign"


def _small_helpsteer2(folder: Path) -> dict[str, str]:
    """Tiny train/eval files in the steerable format; returns their SHA-256 table."""
    folder.mkdir(parents=True, exist_ok=True)
    table = {}
    for split, seed in (("train", 1), ("eval", 2)):
        bench = synthetic_benchmark(3, (2, 2), 5, 5, seed=seed,
                                    attributes=HELPSTEER2_ATTRIBUTES)
        path = write_steerable_json(bench, folder / f"{split}.json")
        table[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return table


def _files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ---------------------------------------------------------------- data location


def test_resolve_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLURALIGN_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("PLURALIGN_DATA")
    assert resolve_data_dir(None) == tmp_path / "xdg" / "pluralign"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir(None) == tmp_path / "home" / ".local" / "share" / "pluralign"
    assert user_data_dir() == tmp_path / "home" / ".local" / "share" / "pluralign"


def test_helpsteer2_from_data_dir(shared_data: Path, clean_env: Path) -> None:
    bench = load_benchmark("helpsteer2", "eval", str(shared_data), download=False)
    assert (bench.name, bench.split, bench.n_scenarios) == ("helpsteer2", "eval", 500)


def test_helpsteer2_from_env(shared_data: Path, clean_env: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLURALIGN_DATA", str(shared_data))
    monkeypatch.setenv("PLURALIGN_OFFLINE", "1")
    assert load_benchmark("helpsteer2", "train", None).n_scenarios == 500


def test_helpsteer2_in_user_dir_is_found_when_data_dir_lacks_it(
    clean_env: Path, tmp_path: Path
) -> None:
    _small_helpsteer2(clean_env / "helpsteer2")
    bench = load_benchmark("helpsteer2", "eval", str(tmp_path / "empty"), download=False)
    assert bench.n_scenarios == 3


# ---------------------------------------------------------------- no data, no network


def test_offline_without_data_says_how_to_provide_it(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PLURALIGN_OFFLINE", "1")
    with pytest.raises(DataNotFoundError) as info:
        load_benchmark("helpsteer2", "eval", str(tmp_path / "nothing"))
    msg = str(info.value)
    assert "\n" not in msg
    assert "`data=DIR`" in msg and "PLURALIGN_DATA" in msg
    assert str(clean_env / "helpsteer2") in msg
    assert str(tmp_path / "nothing" / "helpsteer2" / "eval.json") in msg
    assert not clean_env.exists()


def test_download_false_wins_over_environment(clean_env: Path) -> None:
    with pytest.raises(DataNotFoundError, match="downloading is off"):
        load_benchmark("helpsteer2", "eval", None, download=False)


def test_no_network_gives_the_same_advice(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, serve: Any, tmp_path: Path
) -> None:
    server = serve(tmp_path / "www")
    url = server.url
    server.close()  # nothing listens there any more: a refused connection
    monkeypatch.setenv("PLURALIGN_HELPSTEER2_URL", url)
    with pytest.raises(DownloadError) as info:
        load_benchmark("helpsteer2", "eval", None)
    msg = str(info.value)
    assert isinstance(info.value, DataNotFoundError)
    assert "\n" not in msg and "failed" in msg and "`data=DIR`" in msg
    assert _files_under(clean_env) == []


# ---------------------------------------------------------------- download


def test_download_verifies_and_loads(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, serve: Any, tmp_path: Path
) -> None:
    table = _small_helpsteer2(tmp_path / "www")
    server = serve(tmp_path / "www")
    monkeypatch.setenv("PLURALIGN_HELPSTEER2_URL", server.url + "/")
    monkeypatch.setattr(data, "HELPSTEER2_SHA256", table)
    bench = load_benchmark("helpsteer2", "eval", None)
    assert bench.n_scenarios == 3 and bench.attributes == HELPSTEER2_ATTRIBUTES
    assert _files_under(clean_env) == ["helpsteer2/eval.json", "helpsteer2/train.json"]
    for name in table:
        assert (clean_env / "helpsteer2" / name).read_bytes() == \
            (tmp_path / "www" / name).read_bytes()
    assert sorted(server.paths) == ["/eval.json", "/train.json"]
    load_benchmark("helpsteer2", "train", None)  # second use: no new request
    assert len(server.paths) == 2


def test_checksum_mismatch_leaves_nothing(serve: Any, tmp_path: Path) -> None:
    table = _small_helpsteer2(tmp_path / "www")
    server = serve(tmp_path / "www")
    dest = tmp_path / "dest"
    bad = {"train.json": "0" * 64, "eval.json": table["eval.json"]}
    with pytest.raises(DownloadError, match=r"failed its checksum.*nothing was kept") as info:
        download_helpsteer2(dest, base_url=server.url, checksums=bad)
    assert f"{server.url}/train.json" in str(info.value)
    assert _files_under(dest) == []
    assert download_helpsteer2(dest, base_url=server.url, checksums=table)
    assert _files_under(dest) == ["eval.json", "train.json"]


def test_http_error_leaves_nothing(serve: Any, tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    server = serve(tmp_path / "www")
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_helpsteer2(tmp_path / "dest", base_url=server.url,
                            checksums={"eval.json": "0" * 64})
    assert _files_under(tmp_path / "dest") == []


def test_embedded_checksums_match_the_published_files(
    shared_data: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch, serve: Any
) -> None:
    """Served straight from the shared copy of the published files (nothing copied)."""
    server = serve(shared_data / "helpsteer2")
    monkeypatch.setenv("PLURALIGN_HELPSTEER2_URL", server.url)
    bench = load_benchmark("helpsteer2", "eval", None)
    assert bench.n_scenarios == 500
    assert _files_under(clean_env) == ["helpsteer2/eval.json", "helpsteer2/train.json"]


# ---------------------------------------------------------------- other names


def test_synthetic_specs() -> None:
    assert parse_synthetic("synthetic") == data.SYNTHETIC_DEFAULTS
    p = parse_synthetic("synthetic:S=12,R=3,A=2,L=5,seed=4")
    assert (p["S"], p["R_min"], p["R_max"], p["A"], p["L"], p["seed"]) == (12, 3, 3, 2, 5, 4)
    ev = load_benchmark("synthetic:S=12,R=2-4,A=2,L=5,seed=4", "eval", None)
    tr = load_benchmark("synthetic:S=12,R=2-4,A=2,L=5,seed=4", "train", None)
    assert (ev.name, ev.split, ev.n_scenarios, len(ev.attributes)) == ("synthetic", "eval", 12, 2)
    assert set(np.diff(ev.offsets).tolist()) <= {2, 3, 4}
    assert ev.content_hash != tr.content_hash
    ref = synthetic_benchmark(12, (2, 4), 2, 5, seed=4)
    assert np.array_equal(ev.labels, ref.labels)  # eval uses the seed as given
    assert load_benchmark("synthetic", "eval", None).n_scenarios == 336


@pytest.mark.parametrize(("spec", "field"), [
    ("synthetic:S=abc", "S"), ("synthetic:R=1-3", "R"), ("synthetic:Q=3", "Q"),
    ("synthetic:L=1", "L"), ("synthetic:S", "S"),
])
def test_bad_synthetic_specs(spec: str, field: str) -> None:
    with pytest.raises(InputError, match=f"field '{field}'"):
        load_benchmark(spec, "eval", None)


def test_path_and_raw_names(tmp_path: Path) -> None:
    _small_helpsteer2(tmp_path / "helpsteer2")
    bench = load_benchmark(str(tmp_path / "helpsteer2" / "eval.json"), "eval", None)
    assert bench.name == "helpsteer2" and bench.attributes == HELPSTEER2_ATTRIBUTES
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"prompt": "p", "response": r, **dict.fromkeys(
        HELPSTEER2_ATTRIBUTES, 2)}) + "\n" for r in ("a", "b")))
    raw = load_benchmark(f"helpsteer2-raw:{rows}", "train", None)
    assert raw.n_scenarios == 1 and raw.labels.tolist() == [[0.5] * 5] * 2
    with pytest.raises(DataNotFoundError, match="not found"):
        load_benchmark(str(tmp_path / "absent.json"), "eval", None)
    with pytest.raises(InputError, match="unknown benchmark 'nonsense'"):
        load_benchmark("nonsense", "eval", None)


def test_mic_from_csv_in_data_dir(clean_env: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "mic").mkdir(parents=True)
    write_mic_csv(root / "mic" / "MIC.csv", random_mic_rows(700, seed=6))
    with warnings.catch_warnings():
        warnings.simplefilter("error", StratificationWarning)
        ev = load_benchmark("mic", "eval", str(root))
    # MIC.csv is split by the authors' published procedure (tests/engine/test_mic_split.py)
    published = load_mic_csv(root / "mic" / "MIC.csv", procedure="published")["eval"]
    assert (ev.name, ev.split, ev.attributes) == ("mic", "eval", MIC_ATTRIBUTES)
    assert ev.n_scenarios > 0 and [s.id for s in ev.scenarios] == [
        s.id for s in published.scenarios]
    with pytest.raises(InputError, match="no split 'test'"):
        load_benchmark("mic", "test", str(root))


def test_prepared_mic_json_wins(clean_env: Path, tmp_path: Path) -> None:
    bench = synthetic_benchmark(5, (2, 3), 6, 7, attributes=MIC_ATTRIBUTES)
    write_steerable_json(bench, tmp_path / "mic" / "train.json")
    got = load_benchmark("mic", "train", str(tmp_path))
    assert got.n_scenarios == 5 and got.name == "mic"


def test_missing_mic_says_it_is_gated(clean_env: Path, tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_benchmark("mic", "eval", str(tmp_path))
    msg = str(info.value)
    assert "data-use agreement" in msg and "mic/MIC.csv" in msg and "`data=DIR`" in msg
    assert "\n" not in msg


# ---------------------------------------------------------------- published targets


def test_published_targets(shared_data: Path, clean_env: Path) -> None:
    sampled = published_targets("helpsteer2", "sampled", str(shared_data))
    assert sampled is not None and len(sampled) == 50 and sampled.name == "sampled"
    assert sampled.labels is not None and sampled.labels[0] == "1attributes_target00"
    assert sampled.attributes == HELPSTEER2_ATTRIBUTES
    first = json.loads((shared_data / "alignment_targets" / "sampled_helpsteer2" /
                        "1attributes_target00.json").read_text())
    assert sampled.target(0) == {k: v for k, v in first.items() if v != 0.5}
    mic = published_targets("mic", "sampled", str(shared_data))
    assert mic is not None and len(mic) == 60 and mic.attributes == MIC_ATTRIBUTES
    high = published_targets("mic", "high", str(shared_data))
    low = published_targets("helpsteer2", "low", str(shared_data))
    assert high is not None and np.array_equal(high.values, np.ones((1, 6)))
    assert low is not None and np.array_equal(low.values, np.zeros((1, 5)))


def test_published_targets_absent(clean_env: Path, tmp_path: Path) -> None:
    assert published_targets("helpsteer2", "sampled", str(tmp_path)) is None
    assert published_targets("custom", "high", str(tmp_path)) is None
    with pytest.raises(InputError, match="no published target set 'all'"):
        published_targets("helpsteer2", "all", str(tmp_path))


@pytest.mark.parametrize("split", ["../eval", "/etc/passwd", "eval/../../x", "", "a" * 65])
def test_a_split_of_a_named_benchmark_is_a_name_never_a_path(split: str, tmp_path: Path) -> None:
    from pluralign.engine.data.sources import load_benchmark
    from pluralign.engine.errors import InputError

    (tmp_path / "eval.json").write_text("[]")  # a file the path would reach
    with pytest.raises(InputError, match="split"):
        load_benchmark("helpsteer2", split, tmp_path / "helpsteer2", download=False)


# ---------------------------------------------------------------- refused at load


def _rec(**fields: Any) -> dict[str, Any]:
    return {"prompt": "p", "responses": ["a", "b"], "labels": [{"x": 0}, {"x": 1}], **fields}


@pytest.mark.parametrize(("text", "record", "field", "fragment"), [
    ('[{"prompt": "p", "responses": ["a", "b"], "labels": [{"x": 0, "x": 1}, {"x": 1}]}]',
     "record 0", "labels[0].x", "'x' appears twice"),
    (json.dumps([_rec(), _rec()])[:-1] + ', {"prompt": "q", "id": 1, "id": 2,'
     ' "responses": ["a", "b"], "labels": [{"x": 0}, {"x": 1}]}]', "record 2", "id", "twice"),
    (json.dumps([_rec(), _rec(prompt=" \n")]), "record 1", "prompt", "empty prompt"),
    (json.dumps([_rec(responses=["a", "\t"])]), "record 0", "responses[1]", "empty response"),
    (json.dumps([_rec(responses=[str(i) for i in range(27)],
                      labels=[{"x": i % 2} for i in range(27)])]),
     "record 0", "responses", "27 responses; at most 26"),
])
def test_benchmark_file_refused_naming_record_and_field(
        tmp_path: Path, text: str, record: str, field: str, fragment: str) -> None:
    path = tmp_path / "bench.json"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_benchmark(str(path), "eval")
    msg = str(info.value)
    assert str(path) in msg and record in msg and f"field '{field}'" in msg, msg
    assert fragment in msg


def test_raw_rows_not_utf8_or_with_a_repeated_key_name_file_and_record(tmp_path: Path) -> None:
    bad = tmp_path / "rows.jsonl"
    bad.write_bytes(b'{"prompt": "a"}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(InputError, match=r"rows.jsonl, record 1 \(line 2\): not UTF-8"):
        load_benchmark(f"helpsteer2-raw:{bad}", "eval")
    bad.write_text('{"prompt": "a"}\n{"prompt": "b", "prompt": "c"}\n')
    with pytest.raises(InputError, match=r"record 1 \(line 2\), field 'prompt'.*twice"):
        load_benchmark(f"helpsteer2-raw:{bad}", "eval")


def test_synthetic_responses_beyond_what_judges_letter_are_refused() -> None:
    parse_synthetic("synthetic:R=2-26")
    with pytest.raises(InputError, match=r"field 'R'.*<= 26"):
        parse_synthetic("synthetic:R=2-27")
