"""``pluralign sweep --scorer reward`` against the fake server's pooling route, the typed
RewardConfig behind it (same identities as the flags always gave) and ``pluralign.score``'s
reward path, which the sweep runs and ``align``/``jury`` read back."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pluralign.actors.testing.fake_server import FakeOpenAIServer
from pluralign.jobs.cli import main
from pluralign.jobs.cli.args import reward_config

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


# ---------------------------------------------------------------- typed config and facade

IDENTITIES = [  # computed by the argparse-reading code before RewardConfig: caches keep hits
    (["fake", "--reward-attributes", HEADS, "--reward-squash"], "reward#c2d579bb98fa"),
    (["fake", "--reward-attributes", HEADS], "reward#fd6bbc1261d2"),
    (["m/rm", "--reward-attributes",
      "verbosity=1,helpfulness=0,correctness=2,coherence=0,complexity=3",
      "--reward-route", "/classify", "--revision", "abc123"], "reward#3584c0e73cfa"),
    (["m/rm", "--reward-attributes", HEADS, "--backend", "vllm", "--reward-squash",
      "--reward-batch", "8"], "reward#e1d51d56565f"),
    (["m/rm", "--reward-attributes", HEADS, "--reward-route", "rewards", "--base-url",
      "http://h:1/v1", "--api-key-env", "none"], "reward#c43c344e436e"),
]


def _bench(shared_data: Path, limit: int | None = None) -> Any:
    import pluralign

    return pluralign.load_benchmark("helpsteer2", "eval", data=shared_data, limit=limit)


@pytest.mark.parametrize(("flags", "identity"), IDENTITIES)
def test_flags_give_the_identity_they_always_had(shared_data: Path, flags: list[str],
                                                 identity: str) -> None:
    import pluralign
    from pluralign.jobs.cli import parse

    args = parse(["sweep", "--scorer", "reward", "--out", "x", "--model", *flags])
    config = reward_config(args)
    assert pluralign.scorer_identity(_bench(shared_data), "reward", config=config) == identity


def test_config_from_flags_has_the_api_defaults() -> None:
    from pluralign.jobs.cli import parse
    from pluralign.jobs.configs import RewardConfig

    args = parse(["sweep", "--scorer", "reward", "--out", "x", "--model", "m"])
    assert reward_config(args) == RewardConfig(model="m")
    args = parse(["sweep", "--scorer", "reward", "--out", "x", "--model", "m", "--reward-batch",
                  "4", "--reward-attributes", "helpfulness=0", "--engine-arg", "dtype=half",
                  "--tensor-parallel", "2", "--reward-route", "/classify"])
    assert reward_config(args) == RewardConfig(
        model="m", batch=4, attributes="helpfulness=0", engine_args=("dtype=half",),
        tensor_parallel=2, route="/classify")


def test_a_mapping_and_its_text_are_one_identity(shared_data: Path) -> None:
    import pluralign

    bench = _bench(shared_data)
    heads = dict(part.split("=") for part in HEADS.split(","))
    as_map = pluralign.RewardConfig(model="fake", squash=True,
                                    attributes={a: int(h) for a, h in heads.items()})
    assert pluralign.scorer_identity(bench, "reward", config=as_map) == IDENTITIES[0][1]


def test_facade_scores_through_the_cache_the_sweep_uses(tmp_path: Path,
                                                        shared_data: Path) -> None:
    import asyncio
    import math

    import pluralign
    from pluralign.actors.testing.fake_server import fake_reward

    bench = _bench(shared_data, limit=12)
    with FakeOpenAIServer() as srv:
        config = pluralign.RewardConfig(model="fake", attributes=HEADS, squash=True,
                                        base_url=srv.url, api_key_env="none", batch=10)
        scores = pluralign.score(bench, "reward", config=config, cache=tmp_path / "c",
                                 quiet=True)
        assert scores.report == {"sent": 24, "scored": 120, "failed": 0}
        assert srv.stats()["total"] == 3  # 24 inputs in batches of 10
        assert scores.identity == IDENTITIES[0][1]
        text = f"{bench.scenarios[3].prompt}\n\n{bench.scenarios[3].responses[1]}"
        row = int(bench.offsets[3]) + 1
        for j, attr in enumerate(bench.attributes):
            head = int(dict(p.split("=") for p in HEADS.split(","))[attr])
            expected = 1 / (1 + math.exp(-fake_reward(text)[head]))
            assert scores.predictions[row, j] == pytest.approx(expected)
        again = asyncio.run(pluralign.ascore(bench, "reward", config=config,
                                             cache=tmp_path / "c", quiet=True))
        assert again.report["sent"] == 0 and (again.predictions == scores.predictions).all()
        assert _sweep(shared_data, srv.url, tmp_path / "c", tmp_path / "r") == 0
        assert srv.stats()["total"] == 3  # the sweep reads what the facade wrote
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["scorer"] == scores.identity and summary["reward_counts"]["sent"] == 0


@pytest.mark.parametrize(("config", "message"), [
    (None, "needs its settings, a RewardConfig (got no settings)"),
    ("llm", "a RewardConfig (got a LLMConfig)"),
    ({"attributes": None}, "needs its head per attribute"),
    ({"attributes": {"helpfulness": -1}}, "must be a non-negative integer"),
    ({"attributes": {"length": 0}}, "unknown attribute 'length'"),
    ({"attributes": "helpfulness=0"}, "maps no head to ['correctness'"),
    ({"attributes": HEADS, "batch": 0}, "`batch` must be between 1 and 100,000, got 0"),
])
def test_bad_reward_settings_are_clear_errors(shared_data: Path, config: Any,
                                              message: str) -> None:
    import pluralign

    with pytest.raises(pluralign.InputError, match=re.escape(message)):  # refused when built
        if isinstance(config, dict):
            config = pluralign.RewardConfig(model="m", **config)
        elif config == "llm":
            config = pluralign.LLMConfig(model="m")
        pluralign.score(_bench(shared_data, limit=2), "reward", config=config,
                        cache="/nonexistent/never-written")


def test_align_and_jury_read_cached_reward_scores(tmp_path: Path, shared_data: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--benchmark", "helpsteer2", "--data", str(shared_data), "--scorer", "reward",
             "--model", "fake", "--reward-attributes", HEADS, "--reward-squash", "--limit",
             "12", "--cache", str(tmp_path / "c")]
    assert main(["align", *flags, "--targets", "high"]) != 0  # nothing cached yet
    assert "no complete scores of reward#c2d579bb98fa" in capsys.readouterr().err
    with FakeOpenAIServer() as srv:
        assert _sweep(shared_data, srv.url, tmp_path / "c", tmp_path / "r") == 0
        sent = srv.stats()["total"]
        capsys.readouterr()
        assert main(["align", *flags, "--targets", "high"]) == 0
        assert "accuracy" in capsys.readouterr().out
        groups = Path(__file__).resolve().parents[2] / "docs/examples/helpsteer2_groups.json"
        assert main(["jury", *flags, "--groups", str(groups), "--bootstrap", "0",
                     "--out", str(tmp_path / "j")]) == 0
        assert srv.stats()["total"] == sent  # both read the cache, nothing is sent
    jury = json.loads((tmp_path / "j" / "summary.json").read_text())
    assert jury["scorer"] == IDENTITIES[0][1]


def test_vllm_engine_settings_reach_the_pooling_model_typed() -> None:
    import types

    from pluralign.engine.errors import InputError
    from pluralign.jobs.configs import RewardConfig
    from pluralign.jobs.reward_scoring import vllm_reward_kwargs

    no_parser = types.SimpleNamespace()  # a vLLM without its CLI parser: JSON literals
    config = RewardConfig(model="m", backend="vllm", tensor_parallel=2,
                          engine_args=("max_model_len=512", "enforce-eager=true", "dtype=half"))
    assert vllm_reward_kwargs(config, no_parser) == {
        "max_model_len": 512, "enforce_eager": True, "dtype": "half", "tensor_parallel_size": 2}
    with pytest.raises(InputError, match="expected KEY=VALUE"):
        vllm_reward_kwargs(RewardConfig(model="m", engine_args=("eager",)), no_parser)
