"""End to end against the local fake server: ``overton`` (LLM entailment judge), ``opinions``
(sampled survey answers), both cached so a rerun sends nothing; ``pareto`` and ``annotators``
on files written here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pluralign.jobs.cli import main
from tests.fake_openai import FAKE_KEY, FAKE_KEY_ENV, fake_key, make_fake_server

__all__ = ["fake_key", "make_fake_server"]

OVERTON = {"queries": [{
    "id": "q1", "query": "Should cities ban cars downtown?",
    "window": ["Banning cars reduces air pollution", "Shops may lose customers who drive"],
    "unreasonable": ["Cars should be banned everywhere forever"],
    "responses": {"a": "It reduces air pollution but shops may lose customers.", "b": "Yes."}}]}
SURVEY = {"questions": [{"id": "s1", "question": "Is it good?", "options": ["Yes", "No", "Maybe"],
                         "groups": {"US": {"probabilities": [0.5, 0.25, 0.25]}}}]}


def _llm(server: Any, tmp: Path) -> list[str]:
    return ["--backend", "openai", "--base-url", server.url, "--model", "fake", "--no-ray",
            "--api-key-env", FAKE_KEY_ENV, "--cache", str(tmp / "cache")]


def _sent(server: Any) -> int:
    return int(server.stats()["total"])


def _twice(args: list[str], server: Any, tmp: Path, sent: int) -> tuple[Path, Path]:
    """Run a command into tmp/run1, then again into tmp/run2: the first run sends ``sent``
    requests, the rerun none (every answer comes from the cache)."""
    outs = tmp / "run1", tmp / "run2"
    for out in outs:
        assert main([*args, "--out", str(out)]) == 0
        assert _sent(server) == sent, out.name
    return outs


def test_overton_llm_cached(tmp_path: Path, fake_key: str, make_fake_server: Any) -> None:
    server = make_fake_server()
    f = tmp_path / "ov.json"
    f.write_text(json.dumps(OVERTON))
    args = ["overton", "--file", str(f), "--judge", "llm", *_llm(server, tmp_path)]
    # (2 responses) x (2 window + 1 unreasonable)
    o1, o2 = _twice(args, server, tmp_path, 2 * 3)
    s1 = json.loads((o1 / "summary.json").read_text())
    s2 = json.loads((o2 / "summary.json").read_text())
    assert s1["systems"] == s2["systems"] and s2["scoring"]["cached"] == 6
    assert FAKE_KEY not in (o1 / "summary.json").read_text()
    rows = pq.read_table(o1 / "overton.parquet").to_pylist()
    for r in rows:
        assert r["coverage"] == pytest.approx(r["reflected_window"] / r["window"])


def test_overton_lexical_default(tmp_path: Path) -> None:
    f = tmp_path / "ov.json"
    f.write_text(json.dumps(OVERTON))
    assert main(["overton", "--file", str(f), "--out", str(tmp_path / "o")]) == 0
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["judge"] == "lexical-overlap"
    assert s["systems"]["a"]["coverage"] == 1.0 and s["systems"]["b"]["coverage"] == 0.0


def test_opinions_cached(tmp_path: Path, fake_key: str, make_fake_server: Any) -> None:
    server = make_fake_server()
    f = tmp_path / "survey.json"
    f.write_text(json.dumps(SURVEY))
    args = ["opinions", "--file", str(f), "--samples", "6", *_llm(server, tmp_path)]
    _, d2 = _twice(args, server, tmp_path, 6)
    s = json.loads((d2 / "summary.json").read_text())
    assert s["answered"] == 1 and s["scoring"]["cached"] == 6
    row = pq.read_table(d2 / "opinions.parquet").to_pylist()[0]
    assert sum(row["model_distribution"]) == pytest.approx(1.0)
    assert all(abs(x * 6 - round(x * 6)) < 1e-9 for x in row["model_distribution"])  # k/6


def _sweep_dir(path: Path, accs: list[float]) -> Path:
    path.mkdir()
    (path / "summary.json").write_text(json.dumps({"scorer": path.name}))
    pq.write_table(pa.table({"set": ["s"] * len(accs), "target": [f"t{i}" for i in range(len(accs))],
                             "accuracy": accs}), path / "per_target.parquet")
    return path


def test_pareto_hand_example(tmp_path: Path) -> None:
    a = _sweep_dir(tmp_path / "a", [60.0, 50.0])
    b = _sweep_dir(tmp_path / "b", [55.0, 55.0])
    c = _sweep_dir(tmp_path / "c", [50.0, 40.0])  # dominated by a
    assert main(["pareto", str(a), str(b), str(c), "--out", str(tmp_path / "p")]) == 0
    s = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert [r["on_front"] for r in s["runs"]] == [True, True, False]
    assert [r["steerability"] for r in s["runs"]] == pytest.approx([1.1, 1.1, 0.9])


def test_annotators_ratings(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    f.write_text("annotator,scenario,response,rating\np,s,x,5\np,s,y,1\nq,s,x,2\nq,s,y,3\n")
    choices = tmp_path / "c.json"
    choices.write_text(json.dumps({"s": "y"}))
    assert main(["annotators", "--path", str(f), "--alpha", "0,inf", "--choices", str(choices),
                 "--out", str(tmp_path / "a")]) == 0
    g = json.loads((tmp_path / "a" / "summary.json").read_text())["groups"][0]
    assert g["optimal_welfare_a0"] == pytest.approx(0.625)
    assert g["system_welfare_a0"] == pytest.approx(0.25)
    f.write_text("annotator,scenario,response,rating\np,s,x,9\n")
    assert main(["annotators", "--path", str(f), "--out", str(tmp_path / "b")]) == 2


def test_opinions_cache_key_fields(tmp_path: Path, fake_key: str, make_fake_server: Any) -> None:
    """Changing the options, the model or the option rotation misses the cache; more samples
    send only the new ones."""
    server = make_fake_server()
    f = tmp_path / "survey.json"
    f.write_text(json.dumps(SURVEY))
    base = ["opinions", "--file", str(f), "--samples", "2", *_llm(server, tmp_path)]
    steps = [(base, 2), ([*base, "--rotate-options"], 2),
             ([("other" if a == "fake" else a) for a in base], 2), ([*base, "--samples", "3"], 1)]
    for i, (args, new) in enumerate(steps):
        before = _sent(server)
        assert main([*args, "--out", str(tmp_path / f"o{i}")]) == 0
        assert _sent(server) - before == new, args
    edited = json.loads(json.dumps(SURVEY))
    edited["questions"][0]["options"][2] = "Unsure"
    f.write_text(json.dumps(edited))
    before = _sent(server)
    assert main([*base, "--out", str(tmp_path / "edited")]) == 0
    assert _sent(server) - before == 2


def test_api_client_parses_top_logprobs(fake_key: str, make_fake_server: Any) -> None:
    """A real HTTP answer of the fake server: the client asks for logprobs and keeps the first
    token's alternatives exactly as sent."""
    import asyncio

    from pluralign.actors.backends.api_client import APIClientConfig, OpenAIBackend
    from pluralign.actors.testing.fake_server import option_logprobs
    from pluralign.engine.run.backend import NO_LOGPROBS, GenerationRequest, Message

    server = make_fake_server()
    msgs = (Message("user", "Pick one.\nA. yes\nB. no\nC. maybe"),)
    req = GenerationRequest("r", msgs, max_tokens=1, top_logprobs=4)

    async def ask(url: str) -> Any:
        backend = OpenAIBackend(APIClientConfig(base_url=url, model="fake",
                                                api_key_env=FAKE_KEY_ENV, max_retries=0))
        try:
            return (await backend.generate([req]))[0]
        finally:
            await backend.close()

    body = OpenAIBackend(APIClientConfig(model="fake")).request_body(req)
    assert body["logprobs"] is True and body["top_logprobs"] == 4
    result = asyncio.run(ask(server.url))
    sent = option_logprobs({"messages": [{"role": "user", "content": msgs[0].content}]}, 4)
    assert result.ok and len(sent) == 4
    assert result.samples[0].top_logprobs == {a["token"]: a["logprob"] for a in sent}
    assert result.samples[0].text == sent[0]["token"]
    bare = make_fake_server(logprobs=False)
    failed = asyncio.run(ask(bare.url))
    assert failed.failure is not None and failed.failure.message == NO_LOGPROBS
    assert failed.failure.kind.value == "fatal_item" and _sent(bare) == 1  # not resent


def test_opinions_logprobs_cached(tmp_path: Path, fake_key: str, make_fake_server: Any) -> None:
    """``--logprobs``: one request per question; the distribution is logprob_distribution of
    what the server sent; a rerun sends nothing; the sampled mode does not share its rows."""
    from pluralign.actors.testing.fake_server import option_logprobs
    from pluralign.engine.judges.base import JudgeSettings
    from pluralign.engine.pluralism.distributional import load_distributions
    from pluralign.engine.pluralism.judges import SurveyJudge
    from pluralign.engine.pluralism.opinions import logprob_distribution

    server = make_fake_server()
    survey = {"questions": [*SURVEY["questions"], {
        "id": "s2", "question": "Is it bad?", "options": ["Yes", "No"],
        "groups": {"US": {"probabilities": [0.2, 0.8]}}}]}
    f = tmp_path / "survey.json"
    f.write_text(json.dumps(survey))
    args = ["opinions", "--file", str(f), "--logprobs", "5", *_llm(server, tmp_path)]
    l1, l2 = _twice(args, server, tmp_path, 2)
    s = json.loads((l2 / "summary.json").read_text())
    assert s["mode"] == "logprobs" and s["top_logprobs"] == 5
    assert s["answered"] == 2 and s["scoring"]["cached"] == 2
    judge = SurveyJudge(load_distributions(str(f)), JudgeSettings(model="fake"), logprobs=5)
    rows = {r["question"]: r["model_distribution"]
            for r in pq.read_table(l1 / "opinions.parquet").to_pylist()}
    for item in judge.items(1):
        q = judge.questions[item.scenario]
        body = {"messages": [{"role": m.role, "content": m.content}
                             for m in judge.request(item).messages]}
        sent = {a["token"]: a["logprob"] for a in option_logprobs(body, 5)}
        want = logprob_distribution(sent, "ABC"[: len(q.options)])
        assert want is not None and rows[q.id] == pytest.approx(want.tolist())
    assert main(["opinions", "--file", str(f), "--samples", "2", *_llm(server, tmp_path),
                 "--out", str(tmp_path / "s")]) == 0
    assert _sent(server) == 2 + 4  # the sampled mode has its own rows


def test_opinions_logprobs_endpoint_without(tmp_path: Path, fake_key: str,
                                            make_fake_server: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    server = make_fake_server(logprobs=False)
    f = tmp_path / "survey.json"
    f.write_text(json.dumps(SURVEY))
    args = ["opinions", "--file", str(f), "--logprobs", *_llm(server, tmp_path),
            "--out", str(tmp_path / "x")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert ("returns no log-probabilities: use --samples instead" in err
            or "returns no log-probabilities: use `samples` instead" in err)
    assert _sent(server) == 1 and not (tmp_path / "x" / "summary.json").exists()
    assert main([*args[:4], "--samples", "3", *args[4:-1], str(tmp_path / "y")]) == 2
    assert "drop --samples" in capsys.readouterr().err and _sent(server) == 1


def test_shots_is_refused_by_the_pluralism_judges(tmp_path: Path, fake_key: str,
                                                  make_fake_server: Any, capsys: Any) -> None:
    server = make_fake_server()
    f = tmp_path / "ov.json"
    f.write_text(json.dumps(OVERTON))
    args = ["overton", "--file", str(f), "--judge", "llm", *_llm(server, tmp_path)]
    assert main([*args, "--shots", "3", "--out", str(tmp_path / "o")]) == 2
    assert "--shots applies to few-shot judges only" in capsys.readouterr().err
    assert _sent(server) == 0 and not (tmp_path / "o").exists()


def test_overton_and_pareto_jobs(tmp_path: Path) -> None:
    """The typed jobs without the command line: results as the command prints them, and a
    config that names no queries (or an LLM judge without its LLM) refused."""
    from pluralign.engine.errors import InputError
    from pluralign.jobs.overton import OvertonConfig, run_overton
    from pluralign.jobs.pareto import ParetoConfig, run_pareto

    f = tmp_path / "ov.json"
    f.write_text(json.dumps(OVERTON))
    result = run_overton(OvertonConfig(file=str(f), out=str(tmp_path / "o")))
    assert result.judge == "lexical-overlap" and result.details == {"threshold": 0.5}
    assert result.report["systems"]["a"]["coverage"] == 1.0
    with pytest.raises(InputError, match="exactly one"):
        run_overton(OvertonConfig(out=str(tmp_path / "x")))
    with pytest.raises(InputError, match="`llm`"):
        run_overton(OvertonConfig(file=str(f), judge="llm", out=str(tmp_path / "x")))
    runs = tuple(str(_sweep_dir(tmp_path / n, accs))
                 for n, accs in (("a", [60.0, 50.0]), ("b", [55.0, 55.0]), ("c", [50.0, 40.0])))
    pareto = run_pareto(ParetoConfig(runs=runs, by="set", out=str(tmp_path / "p")))
    assert [r.on_front for r in pareto.runs] == [True, True, False]
    assert pareto.objective_names == ["s"] and pareto.shared_targets == 2
