"""LLM scoring end to end against the fake OpenAI-compatible server (real HTTP on loopback):
each (scenario, attribute) scored exactly once, nothing re-sent, faults lose nothing, the planted
key never leaks, and the choice judges fill the choice cache."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pluralign.engine.align.realign import realign
from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.data.targets import all_targets, from_dicts
from pluralign.engine.errors import InputError
from pluralign.engine.judges.fake_answerer import label_answerer
from pluralign.engine.store.cache import ScoreCache
from pluralign.jobs.cli.args import add_llm_args as add_backend_args
from pluralign.jobs.cli.args import llm_config
from pluralign.jobs.configs import LLMConfig
from pluralign.jobs.llm_scoring import (
    llm_choices,
    llm_scorer_identity,
    run_llm_scoring,
)
from tests.fake_openai import FAKE_KEY, FAKE_KEY_ENV, fake_key, make_fake_server, redis_url

__all__ = ["fake_key", "make_fake_server", "redis_url"]


def bench_pair(n: int = 20) -> tuple[Any, Any]:
    attrs = ("helpfulness", "correctness", "verbosity")
    ev = synthetic_benchmark(n_scenarios=n, responses=(2, 2), n_attributes=3, n_levels=5,
                             seed=1, attributes=attrs, name="llm")
    tr = synthetic_benchmark(n_scenarios=30, responses=(2, 2), n_attributes=3, n_levels=5,
                             seed=2, attributes=attrs, name="llm")
    return ev, tr


def parse(url: str, *extra: str) -> LLMConfig:
    """The LLMConfig of these LLM flags, as the command line builds it."""
    p = argparse.ArgumentParser()
    add_backend_args(p)
    return llm_config(p.parse_args([
        "--model", "fake-model", "--base-url", url, "--api-key-env", FAKE_KEY_ENV, "--no-ray",
        "--concurrency", "4", *extra]))


def parquet_bytes(root: Path) -> list[bytes]:
    return [p.read_bytes() for p in root.rglob("*.parquet")]


def ok_fingerprints(server: Any) -> dict[str, int]:
    return dict(server.stats()["ok_by_fingerprint"])


# ---------------------------------------------------------------- exactly once


def test_each_scenario_attribute_is_scored_once_then_nothing_is_sent(
    tmp_path: Path, fake_key: str, make_fake_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench, train = bench_pair(20)
    server = make_fake_server(answerer=label_answerer(bench.subset(10), noise=0.1))
    cache = ScoreCache(tmp_path)
    args = parse(server.url, "--limit", "10")
    report = run_llm_scoring(bench, train, "comparative-regression", args, cache, log=None)
    n_attr = len(bench.attributes)
    stats = server.stats()
    assert stats["total"] == 10 * n_attr
    assert len(stats["ok_by_fingerprint"]) == 10 * n_attr
    assert set(stats["ok_by_fingerprint"].values()) == {1}
    assert report.schedule.completed == 10 * n_attr and report.bench.n_scenarios == 10
    assert report.identity == llm_scorer_identity(bench, train, "comparative-regression", args)

    preds = cache.predictions(report.bench, report.identity, report.samples)
    assert preds.shape == report.bench.labels.shape and np.isfinite(preds).all()
    assert float(np.mean((preds - report.bench.labels) ** 2)) < 0.05
    acc = realign(report.bench, preds, all_targets(bench.attributes, bench.levels)).accuracy
    assert np.nanmean(acc) > 70.0  # labels + noise: far better than chance (50)

    def no_pool(args: Any) -> Any:
        raise AssertionError("a finished sweep must not start actors")

    monkeypatch.setattr("pluralign.jobs.llm_scoring.make_pool", no_pool)
    again = run_llm_scoring(bench, train, "comparative-regression", args, cache, log=None)
    assert server.stats()["total"] == 10 * n_attr
    assert again.schedule.requests == 0 and again.schedule.cached == 10 * n_attr


def test_few_shot_prompts_carry_training_examples(
    tmp_path: Path, fake_key: str, make_fake_server: Any
) -> None:
    bench, train = bench_pair(4)
    seen: list[int] = []
    answer = label_answerer(bench, noise=0.0)

    def recording(body: Any) -> str:
        seen.append(len(body["messages"]))
        return answer(body)

    server = make_fake_server(answerer=recording)
    few = run_llm_scoring(bench, train, "comparative-regression", parse(server.url),
                          ScoreCache(tmp_path), log=None)
    assert min(seen) >= 4  # system + at least one (user, assistant) example + query
    zero = run_llm_scoring(bench, train, "comparative-regression",
                           parse(server.url, "--zero-shot"), ScoreCache(tmp_path), log=None)
    assert zero.identity != few.identity and min(seen[len(seen) // 2:]) == 2


def test_samples_balance_orders_and_record_the_spread(
    tmp_path: Path, fake_key: str, make_fake_server: Any
) -> None:
    bench, train = bench_pair(5)
    server = make_fake_server(answerer=label_answerer(bench, noise=0.1))
    args = parse(server.url, "--samples", "2", "--zero-shot")
    report = run_llm_scoring(bench, train, "regression", args, ScoreCache(tmp_path), log=None)
    n = bench.n_responses * len(bench.attributes) * 2
    assert server.stats()["total"] == n and report.schedule.completed == n
    assert report.spread is not None and 0.0 < report.spread < 0.3
    assert llm_scorer_identity(bench, train, "regression", args) == report.identity
    greedy = parse(server.url, "--zero-shot")
    assert llm_scorer_identity(bench, train, "regression", greedy) != report.identity


@pytest.mark.redis
def test_progress_and_rate_limits_go_through_redis(
    tmp_path: Path, fake_key: str, make_fake_server: Any, redis_url: str
) -> None:
    import asyncio

    from pluralign.actors.ratelimit import RedisStatus

    bench, train = bench_pair(4)
    server = make_fake_server(answerer=label_answerer(bench, noise=0.1))
    args = parse(server.url, "--zero-shot", "--redis-url", redis_url, "--job-id", "job7",
                 "--rpm", "6000")
    report = run_llm_scoring(bench, train, "comparative-regression", args,
                             ScoreCache(tmp_path), log=None)

    async def read() -> dict[str, Any]:
        status = RedisStatus(redis_url, "job7")
        try:
            return await status.read()
        finally:
            await status.close()

    status = asyncio.run(read())
    assert status["state"] == "done" and status["done"] == report.schedule.completed == 12
    assert status["failed"] == 0 and status["scorer"] == report.identity
    assert FAKE_KEY not in json.dumps(status)


# ---------------------------------------------------------------- faults and secrecy


@pytest.mark.slow
def test_faults_lose_nothing_duplicate_nothing_and_never_leak_the_key(
    tmp_path: Path, fake_key: str, make_fake_server: Any, capsys: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    bench, train = bench_pair(12)
    server = make_fake_server(
        answerer=label_answerer(bench, noise=0.1), fault_429=0.10, fault_5xx=0.05,
        fault_malformed=0.05, fault_timeout=0.08, timeout_sleep=2.0, retry_after=0.05, seed=3)
    cache = ScoreCache(tmp_path)
    args = parse(server.url, "--request-timeout", "0.5")
    report = run_llm_scoring(bench, train, "comparative-regression", args, cache)
    items = bench.n_scenarios * len(bench.attributes)
    s = report.schedule
    assert s.lost == 0 and s.duplicated == 0
    assert s.completed + s.failed == items and s.failed == 0  # no item ran out of retries
    statuses = server.stats()["by_status"]
    assert {"429", "504"} <= set(statuses) and any(k.startswith("50") and k != "504"
                                                    for k in statuses)
    import pyarrow.parquet as pq

    keys: list[str] = []
    for part in tmp_path.rglob("*.parquet"):
        keys += pq.read_table(part).column("key").to_pylist()
    assert len(keys) == len(set(keys)) == bench.n_responses * len(bench.attributes)

    # now every request fails for good: failure records, and still no key anywhere
    server.configure(force_status=500, fault_429=0, fault_5xx=0, fault_malformed=0,
                     fault_timeout=0)
    broken = parse(server.url, "--model", "other-model", "--zero-shot", "--max-retries", "1")
    failed = run_llm_scoring(bench, train, "comparative-regression", broken, cache)
    assert failed.schedule.failed == items and failed.schedule.completed == 0
    out = capsys.readouterr()
    texts = [out.out, out.err, caplog.text, json.dumps(report.as_dict(), default=str),
             json.dumps(failed.as_dict(), default=str)]
    for part in tmp_path.rglob("*.parquet"):
        texts += [str(r) for r in pq.read_table(part).to_pylist()]
    assert all(FAKE_KEY not in t for t in texts)
    assert all(FAKE_KEY.encode() not in b for b in parquet_bytes(tmp_path))
    errors = [r["error"] for p in tmp_path.rglob("*.parquet")
              for r in pq.read_table(p).to_pylist() if r["error"]]
    assert len(errors) == bench.n_responses * len(bench.attributes)


# ---------------------------------------------------------------- choice judges


def test_prompt_aligned_makes_one_call_per_scenario_and_target(
    tmp_path: Path, fake_key: str, make_fake_server: Any
) -> None:
    bench, train = bench_pair(6)
    server = make_fake_server(answerer=label_answerer(bench, noise=0.0))
    targets = from_dicts("t", bench.attributes, [
        {"helpfulness": 1.0}, {"verbosity": 0.0}, {"helpfulness": 0.0, "correctness": 1.0}])
    cache = ScoreCache(tmp_path)
    args = parse(server.url)
    report = run_llm_scoring(bench, train, "prompt-aligned", args, cache, targets=targets,
                             log=None)
    assert server.stats()["total"] == 6 * 3 and report.kind == "choice"
    chosen = llm_choices(bench, "prompt-aligned", report.identity, targets, 1, cache)
    assert chosen.shape == (6, 3) and (chosen >= 0).all()
    for s, sc in enumerate(bench.scenarios):
        h = [lab["helpfulness"] for lab in sc.labels]
        assert h[chosen[s, 0]] == max(h)
    run_llm_scoring(bench, train, "prompt-aligned", args, cache, targets=targets, log=None)
    assert server.stats()["total"] == 6 * 3
    with pytest.raises(Exception, match="needs targets"):
        run_llm_scoring(bench, train, "prompt-aligned", args, cache, log=None)


def test_unaligned_makes_one_call_per_scenario_serving_every_target(
    tmp_path: Path, fake_key: str, make_fake_server: Any
) -> None:
    bench, train = bench_pair(5)
    server = make_fake_server(answerer=label_answerer(bench, noise=0.0))
    cache = ScoreCache(tmp_path)
    report = run_llm_scoring(bench, train, "unaligned", parse(server.url), cache, log=None)
    assert server.stats()["total"] == 5
    targets = all_targets(bench.attributes, bench.levels)
    chosen = llm_choices(bench, "unaligned", report.identity, targets, 1, cache)
    assert chosen.shape == (5, len(targets)) and (chosen == chosen[:, :1]).all()


# ---------------------------------------------------------------- arguments


def test_backend_args_fit_the_sweep_command_and_need_a_model() -> None:
    from pluralign.jobs.cli import build_parser

    args = build_parser("sweep").parse_args([
        "sweep", "--scorer", "comparative-regression", "--out", "x", "--limit", "5",
        "--model", "m", "--backend", "openai", "--samples", "5", "--zero-shot", "--rpm", "60"])
    assert args.limit == 5 and args.samples == 5 and args.few_shot is False and args.rpm == 60
    from pluralign.jobs.llm_scoring import judge_settings

    config = llm_config(args)
    assert (config.limit, config.samples, config.few_shot, config.rpm) == (5, 5, False, 60)
    assert config.use_ray  # no --no-ray
    assert judge_settings(config).temperature == 0.7
    with pytest.raises(Exception, match="`model`"):  # the API's word; the CLI says --model
        judge_settings(parse("http://127.0.0.1:1/v1", "--model", ""))


def test_the_typed_config_defaults_are_the_command_line_defaults() -> None:
    p = argparse.ArgumentParser()
    add_backend_args(p)
    parsed = llm_config(p.parse_args(["--model", "m", "--no-ray"]))
    assert parsed == LLMConfig(model="m")
    flags = llm_config(p.parse_args([
        "--model", "m", "--engine-arg", "max_model_len=2048", "--engine-arg", "enforce_eager=1",
        "--extra-body", '{"top_p": 0.5}', "--max-in-flight", "3", "--grace-seconds", "1"]))
    assert flags.engine_args == ("max_model_len=2048", "enforce_eager=1") and flags.use_ray
    assert (flags.max_in_flight, flags.grace_seconds) == (3, 1.0)


def test_a_typed_config_and_its_flags_share_the_judge_identity() -> None:
    """The API's LLMConfig and the flags that spell the same settings name the same scores."""
    bench, train = bench_pair(3)
    typed = LLMConfig(model="fake-model", base_url="http://127.0.0.1:1/v1",
                      api_key_env=FAKE_KEY_ENV, concurrency=4, revision="r1",
                      extra_body={"top_p": 0.5}, samples=2, sampling_seed=7)
    flags = parse("http://127.0.0.1:1/v1", "--revision", "r1", "--extra-body",
                  '{"top_p":0.5}', "--samples", "2", "--sampling-seed", "7")
    ident = llm_scorer_identity(bench, train, "comparative-regression", typed)
    assert ident == llm_scorer_identity(bench, train, "comparative-regression", flags)
    other = llm_scorer_identity(bench, train, "comparative-regression",
                                dataclasses.replace(typed, max_tokens=64))
    assert other != ident


@pytest.mark.parametrize("name", ["samples", "actors", "shots"])
def test_bad_counts_are_input_errors(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    # the config refuses them when built (the API), the flag while parsing (the command line)
    with pytest.raises(InputError, match=f"`{name}` must be"):
        dataclasses.replace(parse("http://127.0.0.1:1/v1"), **{name: 0})
    with pytest.raises(SystemExit) as e:
        parse("http://127.0.0.1:1/v1", f"--{name}", "0")
    assert e.value.code == 2 and f"--{name}" in capsys.readouterr().err


def test_helpsteer2_limit_scores_each_scenario_attribute_once(
    shared_data: Path, tmp_path: Path, fake_key: str, make_fake_server: Any
) -> None:
    from pluralign.engine.data.sources import load_benchmark

    bench = load_benchmark("helpsteer2", "eval", shared_data)
    train = load_benchmark("helpsteer2", "train", shared_data)
    server = make_fake_server(answerer=label_answerer(bench.subset(10), noise=0.1))
    cache = ScoreCache(tmp_path)
    args = parse(server.url, "--limit", "10")
    report = run_llm_scoring(bench, train, "comparative-regression", args, cache, log=None)
    assert server.stats()["total"] == 10 * 5 == report.schedule.completed
    run_llm_scoring(bench, train, "comparative-regression", args, cache, log=None)
    assert server.stats()["total"] == 50


# ---------------------------------------------------------------- one budget, real answers


def test_timeouts_and_bad_answers_share_one_send_budget_per_item(
    tmp_path: Path, fake_key: str, make_fake_server: Any
) -> None:
    bench, train = bench_pair(6)
    # Every answer is slower than the client's timeout: each send may be paid, none arrives.
    server = make_fake_server(fault_timeout=0.5, timeout_sleep=2.0, fault_bad_content=0.5,
                              seed=11)
    args = parse(server.url, "--zero-shot", "--max-retries", "2", "--request-timeout", "0.5")
    report = run_llm_scoring(bench, train, "comparative-regression", args,
                             ScoreCache(tmp_path), log=None)
    per_item = server.stats()["by_fingerprint"]
    assert max(per_item.values()) <= 3  # 1 + 2 retries: client and scheduler together
    assert report.schedule.sends == sum(per_item.values())
    assert report.schedule.resent == sum(n - 1 for n in per_item.values())
    assert report.schedule.failed > 0 and not report.schedule.complete


def test_answers_with_raw_control_characters_and_fences_score_at_once(
    tmp_path: Path, fake_key: str, make_fake_server: Any
) -> None:
    bench, train = bench_pair(8)
    server = make_fake_server(answerer=label_answerer(bench, noise=0.05),
                              fault_control_chars=0.5, fault_fenced=0.5, seed=12)
    args = parse(server.url, "--zero-shot")
    report = run_llm_scoring(bench, train, "comparative-regression", args,
                             ScoreCache(tmp_path), log=None)
    assert report.schedule.complete and report.schedule.failed == 0
    assert server.stats()["total"] == report.schedule.items  # one send per item, no retries


# ---------------------------------------------------------------- --shots


def _prompt(judge: Any, target: str | None = None) -> tuple[int, int]:
    """(in-context examples, user/assistant example pairs) of the first item's request."""
    item = judge.items([0], 1, None if target is None else [target])[0]
    messages = judge.request(item).messages
    assert messages[0].role == "system" and messages[-1].role == "user"
    key = target if target is not None else item.attribute
    return len(judge.examples(item.scenario, key)), (len(messages) - 2) // 2


@pytest.mark.parametrize(("scorer", "extra", "default_shown"), [
    ("prompt-aligned", ("--few-shot",), 5),
    ("comparative-regression", (), None),  # one per label level of the rubric
    ("regression", ("--few-shot",), None),
])
def test_shots_changes_identity_and_examples_only_when_not_the_default(
        scorer: str, extra: tuple[str, ...], default_shown: int | None) -> None:
    from pluralign.engine.judges import DEFAULT_SHOTS
    from pluralign.jobs.llm_scoring import build_judge

    bench, train = bench_pair(4)
    target = json.dumps({"helpfulness": 1.0}) if scorer == "prompt-aligned" else None
    url = "http://127.0.0.1:1/v1"
    base = build_judge(bench, train, scorer, parse(url, *extra))
    same = build_judge(bench, train, scorer, parse(url, *extra, "--shots",
                                                   str(DEFAULT_SHOTS[scorer])))
    three = build_judge(bench, train, scorer, parse(url, *extra, "--shots", "3"))
    assert parse(url, "--shots", "3").shots == 3 and parse(url).shots is None
    assert same.identity == base.identity and same.settings == base.settings
    assert three.identity != base.identity and three.settings.shots == 3
    assert three.identity == llm_scorer_identity(bench, train, scorer,
                                                 parse(url, *extra, "--shots", "3"))
    (shown, pairs), (shown_three, pairs_three) = _prompt(base, target), _prompt(three, target)
    assert _prompt(same, target) == (shown, pairs)
    if default_shown is not None:  # prompt-aligned: k solved scenarios per query
        assert (shown, shown_three) == (default_shown, 3) and (pairs, pairs_three) == (5, 3)
    else:  # the rubric: k examples per level, each level shown by up to 3 scenarios
        attr = base.items([0], 1)[0].attribute
        levels = len(base.fewshot.levels_shown(attr)[0])
        assert shown <= levels < shown_three <= 3 * levels and pairs < pairs_three


@pytest.mark.parametrize(("scorer", "extra", "message"), [
    ("regression", ("--shots", "3"), "this regression run is zero-shot"),
    ("comparative-regression", ("--zero-shot", "--shots", "2"), "is zero-shot"),
    ("prompt-aligned", ("--shots", "2"), "this prompt-aligned run is zero-shot"),
    ("unaligned", ("--shots", "2"), "unaligned has no in-context examples"),
])
def test_bad_shots_are_clear_errors(scorer: str, extra: tuple[str, ...], message: str) -> None:
    from pluralign.jobs.llm_scoring import build_judge

    bench, train = bench_pair(4)
    with pytest.raises(InputError, match=message) as err:
        build_judge(bench, train, scorer, parse("http://127.0.0.1:1/v1", *extra))
    assert err.value.field == "shots"


def test_shots_on_the_command_line_is_one_clear_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pluralign.jobs.cli import main

    rc = main(["sweep", "--benchmark", "synthetic:S=6,R=2,A=2,L=3,seed=1", "--scorer",
               "regression", "--model", "m", "--shots", "3", "--no-ray", "--targets", "high", "--cache",
               str(tmp_path / "c"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and (("--shots 3" in err[0] and "--few-shot" in err[0])
                                          or ("`shots=3`" in err[0] and "`few_shot=True`" in err[0]))


@pytest.mark.parametrize("command", [True, False])
def test_after_a_first_ctrl_c_a_command_keeps_quitting_at_once(
        command: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once interrupted, a command winding down (summary, Ray shutdown) still exits at the
    next Ctrl-C instead of raising a traceback; a library call (the Python API, a notebook
    kernel) never takes the signals over, so its caller's handler stays in place."""
    import asyncio
    import contextlib
    import signal

    from pluralign.jobs.interrupts import Interrupts, handled_by_command

    exits: list[int] = []
    monkeypatch.setattr(Interrupts, "_exit_now", lambda self: exits.append(130))
    saved = signal.getsignal(signal.SIGINT)

    async def interrupted_once() -> None:
        interrupts = Interrupts(None)
        interrupts.install()
        assert bool(interrupts.saved) == command  # handlers only for a command
        interrupts.count = 1
        interrupts.uninstall()

    try:
        with handled_by_command() if command else contextlib.nullcontext():
            asyncio.run(interrupted_once())
            handler = signal.getsignal(signal.SIGINT)
        if command:
            assert callable(handler) and handler is not saved
            handler(signal.SIGINT, None)
            assert exits == [130]
            assert signal.getsignal(signal.SIGINT) is saved  # the command's end restores it
        else:
            assert handler is saved and exits == []
    finally:
        signal.signal(signal.SIGINT, saved)


# ---------------------------------------------------------------- extra body and endpoint


@pytest.mark.parametrize("body", ['{"n": 100000}', '{"model": "other"}',
                                  '{"messages": []}', '{"temperature": 2}',
                                  '{"max_completion_tokens": 9}'])
def test_extra_body_overriding_the_work_is_refused_before_sending(
        tmp_path: Path, fake_key: str, make_fake_server: Any, body: str) -> None:
    server = make_fake_server()
    bench, train = bench_pair(2)
    key = next(iter(json.loads(body)))
    with pytest.raises(InputError, match=f"'{key}' is part of what identifies the work"):
        run_llm_scoring(bench, train, "regression",
                        parse(server.url, "--extra-body", body, "--zero-shot"),
                        ScoreCache(tmp_path))
    assert server.stats()["total"] == 0 and not parquet_bytes(tmp_path)


def test_a_credential_in_extra_body_is_no_part_of_the_identity(fake_key: str) -> None:
    bench, train = bench_pair(2)

    def identity(body: str) -> str:
        return llm_scorer_identity(bench, train, "regression",
                                   parse("http://127.0.0.1:9/v1", "--extra-body", body))

    one = identity('{"metadata": {"api_key": "sk-one-1234"}, "top_p": 0.9}')
    assert one == identity('{"metadata": {"api_key": "sk-two-5678"}, "top_p": 0.9}')
    assert one != identity('{"metadata": {"api_key": "sk-one-1234"}, "top_p": 0.8}')


def test_a_bad_base_url_is_refused_before_sending(tmp_path: Path, fake_key: str) -> None:
    bench, train = bench_pair(2)
    for url in ("notaurl", "file:///etc/passwd", "http://u:pw-planted@127.0.0.1:9/v1"):
        with pytest.raises(InputError) as e:
            run_llm_scoring(bench, train, "regression", parse(url, "--zero-shot"),
                            ScoreCache(tmp_path))
        assert e.value.field == "base_url" and "pw-planted" not in str(e.value)
    assert not parquet_bytes(tmp_path)
