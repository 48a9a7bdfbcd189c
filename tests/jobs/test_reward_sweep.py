"""``pluralign sweep --scorer reward`` against the fake server's pooling route."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pluralign.actors.fake_server import FakeOpenAIServer
from pluralign.jobs.cli import main

HEADS = "helpfulness=0,correctness=0,coherence=1,complexity=1,verbosity=1"


def _sweep(data: Path, url: str, cache: Path, out: Path, *extra: str) -> int:
    return main(["sweep", "--benchmark", "helpsteer2", "--data", str(data), "--scorer",
                 "reward", "--base-url", url, "--model", "fake", "--api-key-env", "none",
                 "--reward-attributes", HEADS, "--reward-squash", "--limit", "12",
                 "--targets", "sampled", "--cache", str(cache), "--out", str(out), *extra])


def test_reward_sweep_then_rerun_sends_nothing(tmp_path: Path, shared_data: Path) -> None:
    with FakeOpenAIServer() as srv:
        assert _sweep(shared_data, srv.url, tmp_path / "c", tmp_path / "r1") == 0
        sent = srv.stats()["total"]
        assert _sweep(shared_data, srv.url, tmp_path / "c", tmp_path / "r2") == 0
        assert srv.stats()["total"] == sent
    first = json.loads((tmp_path / "r1" / "summary.json").read_text())
    second = json.loads((tmp_path / "r2" / "summary.json").read_text())
    assert first["scorer"].startswith("reward#") and first["scorer"] == second["scorer"]
    assert first["reward_counts"]["sent"] == 24 and second["reward_counts"]["sent"] == 0
    assert first["sets"] == second["sets"]


def test_unmapped_attribute_is_refused(tmp_path: Path, shared_data: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--benchmark", "helpsteer2", "--data", str(shared_data), "--scorer",
              "reward", "--base-url", "http://127.0.0.1:9/v1", "--model", "fake",
              "--reward-attributes", "helpfulness=0", "--limit", "2",
              "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "r")]) != 0
    err = capsys.readouterr().err
    assert "maps no head to ['correctness'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "summary.json").exists()
