"""The public facade: docs/api.md's walk-through runs as written (an LLM sweep against the
local fake server from inside a running event loop included), the command line and the API
compute the same tables, and ``import pluralign`` stays light."""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fake_openai import make_fake_server

__all__ = ["make_fake_server"]
DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def fresh_python(code: str) -> list[str]:
    """The stdout lines of ``code`` run by a new interpreter (nothing imported beforehand)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_api_walkthrough_runs(shared_data: Path, tmp_path: Path, request: Any,
                              monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    pytest.importorskip("aiohttp")
    pytest.importorskip("matplotlib")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PLURALIGN_DATA", str(shared_data))
    blocks = _blocks()
    assert len(blocks) >= 6
    code = "\n".join(blocks)
    namespace: dict[str, Any] = {}
    # The doc is a notebook (tests/test_docs.py runs it in a kernel): its cells await at the
    # top level and start the fake server themselves (stopped at teardown).
    request.addfinalizer(lambda: namespace["server"].stop_thread() if "server" in namespace
                         else None)
    cells = compile(code, str(DOC), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    run = eval(cells, namespace)  # the doc's own asserts check figures
    if inspect.iscoroutine(run):
        asyncio.run(run)

    scores, per_target = namespace["llm_scores"], namespace["llm_targets"]
    assert scores.report.completed + scores.report.cached == scores.report.items > 0
    assert scores.predictions.shape == (40, 5)
    assert set(per_target["set"]) == {"sampled"} and len(per_target) == 50
    per_group = namespace["per_group"]
    assert list(per_group["group"]) == ["thorough", "concise", "ALL"]
    assert (per_group["welfare_ainf"] <= per_group["welfare_a0"] + 1e-12).all()
    assert (tmp_path / "report.html").stat().st_size > 10_000
    # a second LLM run sends nothing: the cache answers every item
    import pluralign

    async def again() -> Any:
        loop = asyncio.get_running_loop()
        assert loop.is_running()
        return await pluralign.ascore_llm(namespace["small"], "comparative-regression",
                                          namespace["config"], cache="cache", quiet=True)

    second = asyncio.run(again())
    assert second.report.requests == 0 and second.report.cached == second.report.items
    assert (second.predictions == scores.predictions).all()

    # the blocking call and the generic async twin work inside a running loop too
    async def blocking_and_generic() -> tuple[Any, Any]:
        blocking = pluralign.score_llm(namespace["small"], "regression", namespace["config"],
                                       cache="cache", quiet=True)
        generic = await pluralign.ascore(namespace["small"], "regression",
                                         config=namespace["config"], cache="cache", quiet=True)
        return blocking, generic

    blocking, generic = asyncio.run(blocking_and_generic())
    assert blocking.report.completed == blocking.report.items > 0
    assert generic.report.requests == 0 and generic.identity == blocking.identity
    assert (generic.predictions == blocking.predictions).all()

    async def choose() -> Any:
        return await pluralign.achoose_llm(namespace["small"], "unaligned", namespace["config"],
                                           cache="cache", quiet=True)

    picks = asyncio.run(choose())
    assert picks.report.completed == picks.report.items == namespace["small"].n_scenarios

    # the reward section scored every response once; a rerun reads the cache
    reward = namespace["reward_scores"]
    assert reward.report["sent"] == namespace["small"].n_responses
    assert reward.identity.startswith("reward#") and reward.predictions.shape == (40, 5)
    assert ((reward.predictions > 0) & (reward.predictions < 1)).all()  # squashed
    rerun = pluralign.score(namespace["small"], "reward", config=namespace["reward"],
                            cache="cache", quiet=True)
    assert rerun.report["sent"] == 0 and (rerun.predictions == reward.predictions).all()


def test_import_is_light_and_lazy() -> None:
    code = ("import sys, pluralign; heavy = [m for m in ('numpy', 'pyarrow', 'pandas', 'ray', "
            "'aiohttp', 'pluralign.jobs.api') if m in sys.modules]; print(heavy); "
            "print(pluralign.LLMConfig.__name__, pluralign.RewardConfig.__name__, "
            "'pluralign.jobs.api' in sys.modules); "
            "print(sorted(set(pluralign.__all__) - set(dir(pluralign))))")
    assert fresh_python(code) == ["[]", "LLMConfig RewardConfig False", "[]"]


def test_unknown_attribute_is_an_attribute_error() -> None:
    import pluralign

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pluralign.nope  # noqa: B018


SYN = "synthetic:S=30,R=2-3,A=3,L=5,seed=4"


def test_the_command_line_and_the_api_score_and_tabulate_alike(tmp_path: Path) -> None:
    import json

    import pandas as pd
    import pyarrow.parquet as pq

    import pluralign
    from pluralign.jobs.cli import main

    cache, out = str(tmp_path / "cache"), tmp_path / "out"
    assert main(["sweep", "--benchmark", SYN, "--scorer", "random", "--seed", "3", "--cache",
                 cache, "--targets", "all", "high", "--out", str(out)]) == 0
    bench = pluralign.load_benchmark(SYN)
    scores = pluralign.score(bench, "random", seed=3, cache=cache, quiet=True)
    assert scores.identity == json.loads((out / "summary.json").read_text())["scorer"]
    assert pluralign.scorer_identity(bench, "random", seed=3) == scores.identity
    cached = pluralign.cached_scores(bench, scores.identity, cache=cache)
    assert (cached.predictions == scores.predictions).all()
    written = pq.read_table(out / "per_target.parquet").to_pandas()
    pd.testing.assert_frame_equal(pluralign.realign(scores, ["all", "high"]), written)


def test_summarize_gives_mean_std_standard_error_and_count(tmp_path: Path) -> None:
    import numpy as np

    import pluralign
    from pluralign.engine.align.per_scenario import standard_error

    scores = pluralign.score(pluralign.load_benchmark(SYN), "random", cache=tmp_path,
                             quiet=True)
    per_target = pluralign.realign(scores, ["all"])
    table = pluralign.summarize(per_target)
    assert list(table.columns) == ["set", "n_attributes", "mean", "std", "standard_error",
                                   "count"]
    assert list(table["n_attributes"]) == [1, 2, 3]  # the empty target is undefined
    for row in table.itertuples():
        acc = per_target[per_target["n_attributes"] == row.n_attributes]["accuracy"].dropna()
        assert row.count == len(acc) and np.isclose(row.std, acc.std(ddof=1))
        assert np.isclose(row.standard_error, standard_error(acc.to_numpy()))
        assert np.isclose(row.standard_error, row.std / np.sqrt(row.count))


def test_scores_of_llm_names_need_a_config_and_missing_scores_are_an_error(
        tmp_path: Path) -> None:
    import pluralign

    bench = pluralign.load_benchmark(SYN)
    with pytest.raises(pluralign.InputError, match="needs its settings"):
        pluralign.score(bench, "regression", cache=tmp_path)
    with pytest.raises(pluralign.InputError, match="picks responses"):
        pluralign.score(bench, "unaligned", cache=tmp_path)
    with pytest.raises(pluralign.InputError, match=r"needs its settings, a RewardConfig"):
        pluralign.score(bench, "reward", config=pluralign.LLMConfig(model="m"), cache=tmp_path)
    with pytest.raises(pluralign.InputError, match="takes no config"):
        pluralign.score(bench, "ridge", config=pluralign.LLMConfig(model="m"), cache=tmp_path)
    with pytest.raises(pluralign.InputError, match="no complete scores"):
        pluralign.cached_scores(bench, "ridge#absent", cache=tmp_path)


def test_spica_evaluate_is_what_the_command_computes(tmp_path: Path) -> None:
    import json

    import pluralign
    from pluralign.jobs.cli import main

    out = tmp_path / "errors.json"
    assert main(["spica", "evaluate", "--bank", "synthetic:1", "--groups", "ALL", "--k", "3",
                 "--bootstrap", "50", "--out", str(out)]) == 0
    written = json.loads(out.read_text())["groups"]
    table = pluralign.spica_evaluate("synthetic:1", k=3, bootstrap=50, groups=["ALL"])
    assert list(table["group"]) == [g["group"] for g in written] == ["ALL"]
    for part in ("baseline", "spica", "gain"):
        assert table[f"{part}_mean"].tolist() == [g[part]["mean"] for g in written]
        assert table[f"{part}_low"].tolist() == [g[part]["low"] for g in written]


def test_the_facade_shows_its_public_surface_and_every_public_error() -> None:
    import inspect

    import pluralign
    from pluralign.engine import errors

    assert dir(pluralign) == sorted(pluralign.__all__)
    assert not {"Any", "TYPE_CHECKING", "importlib", "annotations"} & set(dir(pluralign))
    public = {n for n, o in vars(errors).items()
              if inspect.isclass(o) and issubclass(o, BaseException)
              and o.__module__ == errors.__name__}
    assert public and public <= set(dir(pluralign))
    assert all(getattr(pluralign, n) is getattr(errors, n) for n in public)
