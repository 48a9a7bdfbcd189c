"""Progress bars of the model-free steps: shown when forced, silent off a terminal, and they
advance per block to their total without changing any result."""

from __future__ import annotations

import io
import re
import sys
import time

import numpy as np
import pytest

from pluralign.engine.align.align_loop import realign_loop
from pluralign.engine.align.realign import LabelIndex, realign
from pluralign.engine.data.synthetic import noisy_predictions, synthetic_benchmark
from pluralign.engine.data.targets import all_targets
from pluralign.engine.pluralism.juries import make_jury, sample_group_targets
from pluralign.engine.pluralism.jury_eval import JuryConfig, evaluate_jury
from pluralign.engine.run import progress


@pytest.fixture
def forced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bars on, drawn at once and at every update."""
    monkeypatch.setenv(progress.ENV, "1")
    monkeypatch.setattr(progress, "DELAY", 0.0)
    monkeypatch.setattr(progress, "MININTERVAL", 0.0)


def _streaming_case() -> tuple[object, np.ndarray, object, LabelIndex]:
    bench = synthetic_benchmark(600, (2, 3), 4, 3, seed=1)
    pred = noisy_predictions(bench, 0.3, seed=1)
    targets = all_targets(bench.attributes, bench.levels)
    index = LabelIndex(bench, targets, memory_budget=2**20, resident=False)
    return bench, pred, targets, index


def test_forced_bar_advances_a_realign_to_its_total(
    forced: None, capsys: pytest.CaptureFixture[str]
) -> None:
    bench, pred, targets, index = _streaming_case()
    n_blocks = len(index.blocks())
    assert n_blocks >= 3  # the budget splits the scenarios
    res = realign(bench, pred, targets, index=index)  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert "re-align" in err
    shown = [int(m) for m in re.findall(rf"(\d+)/{n_blocks}\b", err)]
    assert shown[0] == 0 and shown[-1] == n_blocks and shown == sorted(shown)
    # the bars change nothing: the result is the loop oracle's
    counted, correct, _ = realign_loop(bench, pred, targets)  # type: ignore[arg-type]
    np.testing.assert_array_equal(res.counted, counted)
    np.testing.assert_array_equal(res.correct, correct)


def test_forced_bar_follows_jury_blocks_and_bootstrap(
    forced: None, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = synthetic_benchmark(200, (2, 4), 4, 3, seed=2)
    rng = np.random.default_rng(2)
    prefs = {a: {v: 1.0 for v in bench.levels} for a in bench.attributes}
    vals = sample_group_targets(bench.attributes, prefs, 50, rng)
    jury = make_jury(bench.attributes, [("g", vals, np.ones(50), [str(i) for i in range(50)])])
    cfg = JuryConfig(n_bootstrap=20, memory_mb=0.01)  # tiny budget: several scenario blocks
    evaluate_jury(bench, noisy_predictions(bench, 0.3, seed=2), jury, cfg)
    err = capsys.readouterr().err
    totals = {int(t) for t in re.findall(r"jury: .*?\d+/(\d+)", err)}
    assert len(totals) == 1
    total = totals.pop()
    assert total >= 3 and f"{total}/{total}" in err and "bootstrap" in err


def test_bars_stay_off_when_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setattr(progress, "DELAY", 0.0)
    assert not sys.stderr.isatty()
    assert not progress.enabled()
    bench, pred, targets, index = _streaming_case()
    realign(bench, pred, targets, index=index)  # type: ignore[arg-type]
    assert capsys.readouterr().err == ""


def test_a_terminal_enables_bars_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    monkeypatch.delenv(progress.ENV, raising=False)
    assert progress.enabled()
    monkeypatch.setenv(progress.ENV, "0")
    assert not progress.enabled()
    monkeypatch.delenv(progress.ENV)
    with progress.quiet():
        assert not progress.enabled()


def test_total_zero_means_no_bar(forced: None, capsys: pytest.CaptureFixture[str]) -> None:
    with progress.bar(0, "nothing") as b:
        b.update(1)
    assert capsys.readouterr().err == ""


def test_a_bar_that_does_not_advance_is_still_redrawn(
    forced: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow first unit (a kernel compiled on first use) still shows a running clock."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(progress, "TICK", 0.02)
    with progress.bar(5, "slow step"):
        deadline = time.monotonic() + 10
        while stream.getvalue().count("slow step") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert stream.getvalue().count("slow step") >= 3
    assert "0/5" in stream.getvalue()
