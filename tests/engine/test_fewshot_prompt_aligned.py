"""Few-shot prompt-aligned (steerable-pluralism paper §5.3, Table 2): examples from the training
split only, nearest first, each answered with the response its labels imply for the target; the
few-shot settings in the identity; a sweep against the local fake server that a rerun serves
from cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pluralign.engine.data.benchmark import make_benchmark
from pluralign.engine.errors import InputError
from pluralign.engine.judges import JudgeSettings, PromptAlignedJudge, load_prompts, make_judge
from pluralign.engine.judges.base import scenario_text
from pluralign.engine.judges.fake_answerer import label_answerer
from pluralign.engine.judges.fewshot import ChoiceExampleSelector
from pluralign.jobs.cli import main
from pluralign.schemas.records import Scenario
from tests.fake_openai import FAKE_KEY_ENV, fake_key, make_fake_server

__all__ = ["fake_key", "make_fake_server"]

ATTRS = ("a0", "a1")
LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)
WORDS = ["apple", "river", "engine", "violin", "desert", "planet", "garden", "winter"]
TARGET = json.dumps({"a0": 1.0, "a1": 0.0})


def _train() -> Any:
    """Scenario i's labels: response (i % 2) is the only one at (1, 0) except where noted."""
    scen = []
    for i in range(12):
        topic = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(3))
        good, bad = {"a0": 1.0, "a1": 0.0}, {"a0": 0.25, "a1": 0.75}
        labels = (good, bad) if i % 2 == 0 else (bad, good)
        if i in (1, 2):  # both responses tie on labels: no implied answer
            labels = (good, dict(good))
        scen.append(Scenario(f"t{i}", f"{topic} question {i}",
                             (f"train answer {i}.0", f"train answer {i}.1"), labels))
    return make_benchmark("fsp", "train", ATTRS, LEVELS, scen, source="fsp-train")


def _eval() -> Any:
    scen = [Scenario("q0", "river engine violin question", ("eval answer x", "eval answer y"),
                     ({"a0": 0.5, "a1": 0.5}, {"a0": 0.0, "a1": 1.0}))]
    return make_benchmark("fsp", "eval", ATTRS, LEVELS, scen, source="fsp-eval")


def _judge(k: int = 3, similarity: str = "tfidf") -> PromptAlignedJudge:
    train = _train()
    return PromptAlignedJudge(_eval(), JudgeSettings(model="m", few_shot=True),
                              fewshot=ChoiceExampleSelector(train, similarity, k=k))


def test_examples_are_train_only_nearest_first_with_the_implied_choice() -> None:
    judge = _judge(k=3)
    train = judge.fewshot.train if judge.fewshot else None
    assert train is not None
    sims = judge.fewshot.similarities([scenario_text(judge.bench, 0)])[0]
    eligible = [int(c) for c in np.argsort(-sims, kind="stable") if int(c) not in (1, 2)]
    expected = eligible[:3]
    examples = judge.examples(0, TARGET)
    assert [e.train_index for e in examples] == expected
    assert 1 in [int(c) for c in np.argsort(-sims, kind="stable")][:4]  # a tie was skipped
    assert [e.choice for e in examples] == [c % 2 for c in expected]
    item = judge.items([0], 1, [TARGET])[0]
    messages = judge.request(item).messages
    assert [m.role for m in messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    for n, c in enumerate(expected):
        user, answer = messages[1 + 2 * n].content, json.loads(messages[2 + 2 * n].content)
        assert train.scenarios[c].prompt in user and "train answer" in user
        assert answer["choice"] == "AB"[c % 2] and f"Response {answer['choice']}" in \
            answer["reasoning"]
    shown = " ".join(m.content for m in messages[1:-1])
    assert "eval answer" not in shown and "river engine violin question\n" not in shown
    assert "eval answer x" in messages[-1].content


def test_the_implied_choice_depends_on_the_target() -> None:
    judge = _judge(k=2)
    flipped = json.dumps({"a0": 0.25, "a1": 0.75})
    a = judge.examples(0, TARGET)
    b = judge.examples(0, flipped)
    assert [e.train_index for e in a] == [e.train_index for e in b]
    assert [e.choice for e in b] == [1 - e.choice for e in a]
    assert judge.examples(0, "{}") == []  # an empty target implies no answer anywhere


def test_identity_changes_with_k_similarity_and_train_and_zero_shot_is_unchanged() -> None:
    bench, train = _eval(), _train()
    zero = make_judge("prompt-aligned", bench, JudgeSettings(model="m"))
    few = JudgeSettings(model="m", few_shot=True)
    default = make_judge("prompt-aligned", bench, few, train=train)
    assert default.identity != zero.identity
    assert "k=5" in default.describe()["few_shot"]
    assert _judge(k=3).identity != _judge(k=4).identity
    other_train = make_benchmark("fsp", "train", ATTRS, LEVELS, _train().scenarios[:6],
                                 source="other")
    assert make_judge("prompt-aligned", bench, few, train=other_train).identity \
        != default.identity
    # zero-shot templates and identity are those of the zero-shot judge before few-shot existed
    assert "example_user" not in zero.templates() and zero.describe()["few_shot"] is None
    assert make_judge("prompt-aligned", bench, JudgeSettings(model="m"), train=train).identity \
        == zero.identity


def test_shots_set_k_and_the_default_keeps_the_identity() -> None:
    bench, train = _eval(), _train()
    default = make_judge("prompt-aligned", bench, JudgeSettings(model="m", few_shot=True),
                         train=train)
    five = make_judge("prompt-aligned", bench,
                      JudgeSettings(model="m", few_shot=True, shots=5), train=train)
    three = make_judge("prompt-aligned", bench,
                       JudgeSettings(model="m", few_shot=True, shots=3), train=train)
    assert five.identity == default.identity and five.settings.shots is None
    assert three.identity != default.identity and "k=3" in three.describe()["few_shot"]
    assert len(default.examples(0, TARGET)) == 5 and len(three.examples(0, TARGET)) == 3
    assert [e.train_index for e in three.examples(0, TARGET)] == \
        [e.train_index for e in default.examples(0, TARGET)][:3]
    with pytest.raises(InputError, match="zero-shot"):
        make_judge("prompt-aligned", bench, JudgeSettings(model="m", shots=3), train=train)


def test_identity_changes_with_the_similarity() -> None:
    pytest.importorskip("sentence_transformers")
    assert _judge(similarity="tfidf").identity != _judge(similarity="embedding").identity


def test_similarity_is_part_of_the_selector_identity() -> None:
    class Overlap:
        identity = "overlap-test"

        def fit(self, texts: list[str]) -> None:
            self._texts = [set(t.split()) for t in texts]

        def similarity(self, queries: list[str]) -> np.ndarray:
            return np.array([[len(set(q.split()) & t) for t in self._texts] for q in queries],
                            dtype=float)

    train = _train()
    a = ChoiceExampleSelector(train, "tfidf", k=3)
    b = ChoiceExampleSelector(train, Overlap(), k=3)  # type: ignore[arg-type]
    assert a.identity != b.identity and "overlap-test" in b.identity


def test_example_templates_come_from_a_prompts_file(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[prompt-aligned]\nexample_user = "EX {question} :: {responses}"\n'
                    'example_reasoning = "Pick {letter}."\n')
    prompts = load_prompts(path)
    judge = make_judge("prompt-aligned", _eval(), JudgeSettings(model="m", few_shot=True),
                       train=_train(), prompts=prompts)
    messages = judge.request(judge.items([0], 1, [TARGET])[0]).messages
    assert messages[1].content.startswith("EX ")
    assert json.loads(messages[2].content)["reasoning"] in ("Pick A.", "Pick B.")
    assert not messages[-1].content.startswith("EX ")
    bad = tmp_path / "bad.toml"
    bad.write_text('[prompt-aligned]\nexample_reasoning = "{score}"\n')
    with pytest.raises(InputError, match="example_reasoning"):
        load_prompts(bad)


def test_unaligned_still_refuses_few_shot() -> None:
    with pytest.raises(InputError, match="no in-context examples"):
        make_judge("unaligned", _eval(), JudgeSettings(model="m", few_shot=True), train=_train())


SYN = "synthetic:S=6,R=2-3,A=3,L=5,seed=4"


def test_sweep_few_shot_prompt_aligned_scores_every_item_and_a_rerun_sends_nothing(
    tmp_path: Path, fake_key: str, make_fake_server: Any
) -> None:
    from pluralign.engine.data.sources import synthetic_split

    bench = synthetic_split(SYN, "eval")
    server = make_fake_server(answerer=label_answerer(bench, noise=0.0))
    argv = ["sweep", "--benchmark", SYN, "--scorer", "prompt-aligned", "--few-shot",
            "--model", "fake-model", "--base-url", server.url, "--api-key-env", FAKE_KEY_ENV,
            "--no-ray", "--cache", str(tmp_path / "cache"), "--targets", "high", "low"]
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    first = json.loads((tmp_path / "one" / "summary.json").read_text())
    sent = server.stats()["total"]
    items = bench.n_scenarios * 2
    counts = first["manifest"]["counts"]
    assert counts["items"] == items and counts["completed"] == items and sent == items
    assert counts.get("failed", 0) == 0
    scorer = first["manifest"]["scorer"]
    assert scorer["few_shot"] and "k=5" in scorer["few_shot"]
    assert "example_user" in scorer["templates"]
    assert main([*argv, "--out", str(tmp_path / "two")]) == 0
    second = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert server.stats()["total"] == sent  # nothing sent again
    assert second["manifest"]["counts"]["cached"] == items
    assert second["scorer"] == first["scorer"]
    # zero-shot is another scorer: nothing of the few-shot cache is served to it
    zero = [a for a in argv if a != "--few-shot"]
    assert main([*zero, "--out", str(tmp_path / "zero")]) == 0
    assert json.loads((tmp_path / "zero" / "summary.json").read_text())["scorer"] \
        != first["scorer"]
    assert server.stats()["total"] == sent + items
    # the few-shot requests carried examples: none of them equals a zero-shot request
    assert len(server.stats()["ok_by_fingerprint"]) == 2 * items
