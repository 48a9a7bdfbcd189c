"""The LLM judges: prompt contents, balanced orders, letter mapping, few-shot rubric coverage,
answer parsing, identities, prompt-aligned wording, the choice cache and the fake answerer."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pluralign.engine.align.consistency import (
    balanced_orders,
    majority,
    mean_and_spread,
    position_counts,
)
from pluralign.engine.data.benchmark import make_benchmark
from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.errors import CacheSchemaError, InputError
from pluralign.engine.judges import (
    AnswerError,
    ComparativeJudge,
    FewShotSelector,
    JudgeSettings,
    PromptAlignedJudge,
    RegressionJudge,
    UnalignedJudge,
    make_judge,
)
from pluralign.engine.judges.attributes import ATTRIBUTE_DEFINITIONS
from pluralign.engine.judges.base import BuiltRequests, answer_json, usage_meta
from pluralign.engine.judges.comparative import comparative_schema, parse_comparative
from pluralign.engine.judges.fake_answerer import label_answerer, split_prompt
from pluralign.engine.judges.prompt_aligned import describe, parse_choice, target_instructions
from pluralign.engine.judges.regression import parse_regression
from pluralign.engine.judges.scoring import RAW_MAX, meta_with
from pluralign.engine.run.backend import GenerationResult, Sample, Usage
from pluralign.engine.store.choices import CHOICE_SCHEMA, ChoiceCache
from pluralign.schemas.arrow import with_version
from pluralign.schemas.records import Scenario

HS_ATTRS = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
HS_LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


def tiny_bench(n: int = 6, k: int = 2, seed: int = 0, split: str = "eval", topic: str = "cats"):
    """A HelpSteer2-shaped benchmark with readable prompts and reasonings."""
    rng = np.random.default_rng(seed)
    scenarios = []
    for s in range(n):
        labels = tuple(
            {a: float(rng.choice(HS_LEVELS)) for a in HS_ATTRS} for _ in range(k)
        )
        reasonings = tuple({a: f"Reason {s}.{r} for {a}." for a in HS_ATTRS} for r in range(k))
        scenarios.append(Scenario(
            id=f"{split}{s}", prompt=f"Question {s} about {topic} number {s}?",
            responses=tuple(f"Answer {s}.{r} on {topic}." for r in range(k)),
            labels=labels, reasonings=reasonings,
        ))
    return make_benchmark("tiny", split, HS_ATTRS, HS_LEVELS, scenarios, source="tiny")


def result_of(value: object, rid: str = "x") -> GenerationResult:
    text = value if isinstance(value, str) else json.dumps(value)
    return GenerationResult(rid, samples=(Sample(text),))


SETTINGS = JudgeSettings(model="m1")


# ---------------------------------------------------------------- comparative prompts


def test_comparative_prompt_names_attribute_definition_scale_and_every_response() -> None:
    bench = tiny_bench(k=3)
    judge = ComparativeJudge(bench, SETTINGS)
    item = judge.items([2], 1)[0]
    assert item.attribute == "helpfulness"
    req = judge.request(item)
    system, user = req.messages[0], req.messages[-1]
    assert system.role == "system" and user.role == "user" and len(req.messages) == 2
    assert ATTRIBUTE_DEFINITIONS["helpfulness"] in system.content
    assert "0 to 100" in system.content and "50 means" in system.content
    assert bench.scenarios[2].prompt in user.content
    _, shown = split_prompt(user.content)
    assert sorted(shown) == sorted(bench.scenarios[2].responses)
    assert req.json_schema == comparative_schema(["A", "B", "C"])
    letter_schema = req.json_schema["properties"]["A"]
    assert list(letter_schema["properties"]) == ["reasoning", "score"]
    assert letter_schema["properties"]["reasoning"]["maxLength"] == 512
    assert letter_schema["properties"]["score"] == {"type": "integer", "minimum": 0,
                                                     "maximum": 100}
    assert req.id == item.key and req.temperature == 0.0 and req.n == 1


def test_one_item_per_scenario_attribute_sample_with_distinct_keys() -> None:
    bench = tiny_bench(n=4, k=3)
    judge = ComparativeJudge(bench, SETTINGS)
    items = judge.items(range(4), 2)
    assert len(items) == 4 * len(HS_ATTRS) * 2
    assert len({it.key for it in items}) == len(items)
    assert all(len(it.row_keys) == 3 for it in items)
    assert len({k for it in items for k in it.row_keys}) == 4 * 3 * len(HS_ATTRS) * 2


def test_letters_are_mapped_back_to_the_responses_they_were_shown_as() -> None:
    bench = tiny_bench(n=3, k=4)
    judge = ComparativeJudge(bench, SETTINGS)
    for item in judge.items([1], 4):
        req = judge.request(item)
        _, shown = split_prompt(req.messages[-1].content)
        sc = bench.scenarios[1]
        # answer each letter with 10 x the true index of the response shown under it
        answer = {chr(65 + p): {"reasoning": f"saw {text}", "score": 10 * sc.responses.index(text)}
                  for p, text in enumerate(shown)}
        rows = judge.parse(item, result_of(answer, req.id))
        assert [r["response"] for r in rows] == [0, 1, 2, 3]
        assert [r["score"] for r in rows] == [0.0, 0.1, 0.2, 0.3]
        for r in rows:
            assert r["reasoning"] == f"saw {sc.responses[r['response']]}"
            assert r["key"] == item.row_keys[r["response"]]
            assert r["error"] is None and r["sample"] == item.sample


def _answer_for(judge: object, item: object) -> dict[str, object]:
    if isinstance(judge, PromptAlignedJudge):
        return {"reasoning": "r", "choice": "B"}
    if isinstance(judge, RegressionJudge):
        return {"reasoning": "r", "score": 42}
    return {letter: {"reasoning": f"r{p}", "score": 7 * p} for p, letter in enumerate("ABC")}


@pytest.mark.parametrize("make", [
    lambda b: ComparativeJudge(b, SETTINGS), lambda b: RegressionJudge(b, SETTINGS),
    lambda b: PromptAlignedJudge(b, SETTINGS)])
def test_parse_takes_the_request_built_for_the_item_and_stores_what_a_rebuild_would(
        make: object) -> None:
    bench = tiny_bench(n=3, k=3)
    judge, fresh = make(bench), make(bench)  # type: ignore[operator]
    targets = ['{"helpfulness": 1.0}'] if isinstance(judge, PromptAlignedJudge) else None
    for item in judge.items(range(3), 2, targets):
        req = judge.request(item)
        assert len(judge.built) == 1
        result = result_of(_answer_for(judge, item), req.id)
        rows = judge.parse(item, result)
        assert len(judge.built) == 0
        assert rows == fresh.parse(item, result)  # nothing kept there: built again
        prompt = json.loads(str(rows[0]["meta"]))["prompt"]
        assert prompt == fresh.request(item).fingerprint()
        assert prompt == dataclasses.replace(req, max_sends=2).fingerprint()


@pytest.mark.parametrize("usage", [Usage(12, 34), Usage(0, 0), Usage(12.0, 3)])  # type: ignore[arg-type]
def test_meta_is_usage_meta_plus_raw_and_extras(usage: Usage) -> None:
    result = GenerationResult("x", samples=(Sample("é" * 9000),), usage=usage, attempts=2)
    expected = {**json.loads(usage_meta(result)), "raw": "é" * RAW_MAX + "...[cut]",
                "letter": "B", "prompt": "abc"}
    assert meta_with(result, letter="B", prompt="abc") == json.dumps(expected, sort_keys=True)


def test_built_requests_are_bounded_and_never_taken_for_another_item() -> None:
    bench = tiny_bench(n=4, k=3)
    judge, fresh = ComparativeJudge(bench, SETTINGS), ComparativeJudge(bench, SETTINGS)
    judge.built = BuiltRequests(most=3)
    items = judge.items(range(4), 1)
    for it in items:
        judge.request(it)
    assert len(judge.built) == 3
    answer = result_of(_answer_for(judge, items[0]))
    assert judge.parse(items[0], answer) == fresh.parse(items[0], answer)  # forgotten: rebuilt
    judge.request(items[1])
    other = dataclasses.replace(items[1], sample=1)  # same key, another order: not taken
    assert other.attribute is not None and items[1].attribute is not None
    assert (judge.order(other.scenario, other.attribute, 1)
            != judge.order(items[1].scenario, items[1].attribute, 0))
    assert judge.parse(other, answer) == fresh.parse(other, answer)
    judge.request(items[2])
    kept = len(judge.built)
    judge.failure_rows(items[2], "gave up")
    assert len(judge.built) == kept - 1  # no answer will come: forgotten


def test_requests_show_each_response_in_each_position_equally_often() -> None:
    bench = tiny_bench(n=2, k=3)
    judge = ComparativeJudge(bench, SETTINGS)
    items = [it for it in judge.items([0], 6) if it.attribute == "coherence"]
    sc = bench.scenarios[0]
    counts = np.zeros((3, 3), dtype=int)
    for it in items:
        _, shown = split_prompt(judge.request(it).messages[-1].content)
        for pos, text in enumerate(shown):
            counts[sc.responses.index(text), pos] += 1
    assert (counts == 2).all()


@pytest.mark.parametrize("k", [2, 3, 4, 5])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 10, 12])
def test_balanced_orders_are_permutations_balanced_within_one(k: int, n: int) -> None:
    orders = balanced_orders(k, n, f"key{k}{n}")
    assert all(sorted(o) == list(range(k)) for o in orders)
    counts = position_counts(orders)
    assert counts.sum() == n * k
    assert counts.max() - counts.min() <= 1
    if n % k == 0:
        assert (counts == n // k).all()
    # an earlier sample's order does not depend on how many samples are drawn
    assert balanced_orders(k, n + 3, f"key{k}{n}")[:n] == orders


def test_base_order_varies_across_keys() -> None:
    firsts = {balanced_orders(4, 1, f"scenario{i}")[0] for i in range(40)}
    assert len(firsts) > 5


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("not json at all", "not JSON"),
        ([1, 2], "JSON object"),
        ({"A": {"reasoning": "ok", "score": 5}}, "no object for response B"),
        ({"A": {"reasoning": "ok", "score": 5}, "B": "nope"}, "no object for response B"),
        ({"A": {"reasoning": "ok", "score": 101}, "B": {"reasoning": "ok", "score": 1}},
         "outside 0..100"),
        ({"A": {"reasoning": "ok", "score": -1}, "B": {"reasoning": "ok", "score": 1}},
         "outside 0..100"),
        ({"A": {"reasoning": "ok", "score": 7.5}, "B": {"reasoning": "ok", "score": 1}},
         "must be an integer"),
        ({"A": {"reasoning": "ok", "score": True}, "B": {"reasoning": "ok", "score": 1}},
         "must be an integer"),
        ({"A": {"reasoning": "ok", "score": "70"}, "B": {"reasoning": "ok", "score": 1}},
         "must be an integer"),
        ({"A": {"reasoning": " ", "score": 7}, "B": {"reasoning": "ok", "score": 1}},
         "non-empty"),
        ({"A": {"score": 7}, "B": {"reasoning": "ok", "score": 1}}, "non-empty"),
        ({"A": {"reasoning": "x" * 513, "score": 7}, "B": {"reasoning": "ok", "score": 1}},
         "longer than 512"),
    ],
)
def test_malformed_comparative_answers_raise_answer_error(answer: object, message: str) -> None:
    bench = tiny_bench(n=1)
    judge = ComparativeJudge(bench, SETTINGS)
    item = judge.items([0], 1)[0]
    with pytest.raises(AnswerError, match=message):
        judge.parse(item, result_of(answer))


def test_comparative_parse_accepts_integral_floats_and_ignores_extra_letters() -> None:
    got = parse_comparative({"A": {"reasoning": "r", "score": 70.0},
                             "B": {"reasoning": "s", "score": 0}, "C": "extra"}, ["A", "B"])
    assert got == {"A": (70, "r"), "B": (0, "s")}


def test_backend_parsed_value_is_preferred_and_empty_results_are_errors() -> None:
    res = GenerationResult("x", samples=(Sample("garbage", parsed={"k": 1}),))
    assert answer_json(res) == {"k": 1}
    with pytest.raises(AnswerError, match="no samples"):
        answer_json(GenerationResult("x"))


def test_regression_and_choice_parsers_reject_bad_answers() -> None:
    assert parse_regression({"reasoning": "fine", "score": 42}) == (42, "fine")
    with pytest.raises(AnswerError):
        parse_regression({"reasoning": "fine"})
    assert parse_choice({"reasoning": "r", "choice": "B"}, ["A", "B"]) == ("B", "r")
    with pytest.raises(AnswerError, match="not one of"):
        parse_choice({"reasoning": "r", "choice": "C"}, ["A", "B"])
    with pytest.raises(AnswerError):
        parse_choice({"choice": "A"}, ["A", "B"])


def test_failure_rows_cover_every_response_with_error_and_no_score() -> None:
    bench = tiny_bench(n=2, k=3)
    judge = ComparativeJudge(bench, SETTINGS)
    item = judge.items([1], 1)[0]
    rows = judge.failure_rows(item, "bad_answer: no JSON")
    assert [r["key"] for r in rows] == list(item.row_keys)
    assert all(r["score"] is None and r["error"] == "bad_answer: no JSON" for r in rows)


# ---------------------------------------------------------------- regression judge


def test_regression_judge_scores_one_response_per_call() -> None:
    bench = tiny_bench(n=2, k=3)
    judge = RegressionJudge(bench, SETTINGS)
    items = judge.items(range(2), 1)
    assert len(items) == 2 * 3 * len(HS_ATTRS)
    item = next(it for it in items if it.scenario == 1 and it.response == 2)
    req = judge.request(item)
    user = req.messages[-1].content
    assert bench.scenarios[1].responses[2] in user
    assert all(bench.scenarios[1].responses[r] not in user for r in (0, 1))
    assert list(req.json_schema["properties"]) == ["reasoning", "score"]
    rows = judge.parse(item, result_of({"reasoning": "ok", "score": 25}))
    assert len(rows) == 1 and rows[0]["response"] == 2 and rows[0]["score"] == 0.25


# ---------------------------------------------------------------- identity


def test_identity_changes_with_every_setting_that_changes_answers() -> None:
    bench, train = tiny_bench(), tiny_bench(split="train", seed=5)
    base = make_judge("comparative-regression", bench, SETTINGS).identity
    assert make_judge("comparative-regression", bench, SETTINGS).identity == base
    variants = [
        JudgeSettings(model="m2"),
        JudgeSettings(model="m1", temperature=0.7),
        JudgeSettings(model="m1", max_tokens=512),
        JudgeSettings(model="m1", seed=3),
        JudgeSettings(model="m1", few_shot=True),
        JudgeSettings(model="m1", revision="abc123"),
        JudgeSettings(model="m1", backend="vllm"),
        JudgeSettings(model="m1", structured_output="none"),
        JudgeSettings(model="m1", extra_body='{"top_p":0.9}'),
        JudgeSettings(model="m1", prompts="0123456789abcdef"),
        JudgeSettings(model="m1", decoding="vllm:xgrammar"),
    ]
    idents = {make_judge("comparative-regression", bench, s, train=train).identity
              for s in variants}
    assert base not in idents and len(idents) == len(variants)
    assert make_judge("regression", bench, SETTINGS).identity != base
    edited = ComparativeJudge(bench, SETTINGS, definitions={"helpfulness": "Something else."})
    assert edited.identity != base
    other_train = tiny_bench(split="train", seed=6)
    few = JudgeSettings(model="m1", few_shot=True)
    assert (make_judge("comparative-regression", bench, few, train=train).identity
            != make_judge("comparative-regression", bench, few, train=other_train).identity)


def test_template_is_part_of_the_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    import pluralign.engine.judges.comparative as comparative

    bench = tiny_bench()
    before = ComparativeJudge(bench, SETTINGS).identity
    monkeypatch.setattr(comparative, "USER_TEMPLATE", comparative.USER_TEMPLATE + " Be brief.")
    assert ComparativeJudge(bench, SETTINGS).identity != before


def test_row_keys_do_not_depend_on_the_number_of_samples() -> None:
    judge = ComparativeJudge(tiny_bench(), SETTINGS)
    three = {it.key for it in judge.items(range(2), 3)}
    five = {it.key for it in judge.items(range(2), 5)}
    assert three < five and len(five - three) == 2 * len(HS_ATTRS) * 2


# ---------------------------------------------------------------- few-shot


def fewshot_benches() -> tuple:
    train = synthetic_benchmark(n_scenarios=40, responses=(2, 3), n_attributes=3, n_levels=5,
                                seed=11, name="fs")
    # give the training scenarios distinct, overlapping vocabularies
    words = ["apple", "river", "engine", "violin", "desert", "planet", "garden", "winter"]
    scen = []
    for i, sc in enumerate(train.scenarios):
        topic = " ".join(words[(i + j) % len(words)] for j in range(3))
        scen.append(Scenario(sc.id, f"{topic} question {i}", sc.responses, sc.labels,
                             tuple({a: f"why {i}.{r}.{a}" for a in train.attributes}
                                   for r in range(len(sc.responses)))))
    train = make_benchmark("fs", "train", train.attributes, train.levels, scen, source="fs")
    query = make_benchmark("fs", "eval", train.attributes, train.levels, [
        Scenario("q0", "river engine violin question", ("x", "y"),
                 ({a: 0.5 for a in train.attributes},) * 2),
        Scenario("q1", "winter apple question", ("x", "y"),
                 ({a: 0.5 for a in train.attributes},) * 2),
    ], source="fs-eval")
    return train, query


def test_fewshot_examples_cover_every_level_with_the_most_similar_example() -> None:
    train, query = fewshot_benches()
    judge = ComparativeJudge(query, JudgeSettings(model="m", few_shot=True),
                             fewshot=FewShotSelector(train, "tfidf"))
    sims = judge.fewshot.similarities([f"{sc.prompt}\n\nx\n\ny" for sc in query.scenarios])
    for s, attr in itertools.product(range(2), train.attributes):
        examples = judge.examples(s, attr)
        col = train.attributes.index(attr)
        levels_of = [{round(lab[attr] * 100) for lab in sc.labels} for sc in train.scenarios]
        all_levels = set().union(*levels_of)
        covered = set().union(*(set(e.scores) for e in examples))
        assert covered == all_levels
        assert len({e.train_index for e in examples}) == len(examples) <= len(all_levels)
        # brute force: for each level, the most similar scenario showing it is among them
        for level in all_levels:
            showing = [c for c in range(train.n_scenarios) if level in levels_of[c]]
            best = max(showing, key=lambda c: (sims[s, c], -c))
            assert best in {e.train_index for e in examples}
        for e in examples:
            sc = train.scenarios[e.train_index]
            assert e.scores == tuple(round(lab[attr] * 100) for lab in sc.labels)
            assert e.reasonings == tuple(f"why {e.train_index}.{r}.{attr}"
                                         for r in range(len(sc.responses)))
        assert col >= 0


@pytest.mark.parametrize("k", [2, 3])
def test_rubric_shots_take_the_k_most_similar_examples_per_level(k: int) -> None:
    train, query = fewshot_benches()
    one, many = FewShotSelector(train, "tfidf"), FewShotSelector(train, "tfidf", k)
    assert one.identity == FewShotSelector(train, "tfidf", 1).identity
    assert many.identity != one.identity and f"k={k}" in many.identity
    sims = many.similarities([f"{sc.prompt}\n\nx\n\ny" for sc in query.scenarios])
    for s, attr in itertools.product(range(2), train.attributes):
        chosen = [e.train_index for e in many.select("-", attr, sims[s])]
        levels_of = [{round(lab[attr] * 100) for lab in sc.labels} for sc in train.scenarios]
        expected: list[int] = []
        for level in sorted(set().union(*levels_of)):  # brute force, level by level
            showing = sorted((c for c in range(train.n_scenarios) if level in levels_of[c]),
                             key=lambda c: (-sims[s, c], c))
            expected += [c for c in showing[:k] if c not in expected]
        assert chosen == expected
        first = [e.train_index for e in one.select("-", attr, sims[s])]
        assert set(first) <= set(chosen) and len(chosen) > len(first)


def test_shots_settings_follow_the_identity_extra_rule() -> None:
    bench, train = tiny_bench(), tiny_bench(split="train", seed=5)
    few = JudgeSettings(model="m1", few_shot=True)
    default = make_judge("comparative-regression", bench, few, train=train)
    explicit = make_judge("comparative-regression", bench,
                          JudgeSettings(model="m1", few_shot=True, shots=1), train=train)
    assert explicit.identity == default.identity and explicit.settings.shots is None
    two = make_judge("comparative-regression", bench,
                     JudgeSettings(model="m1", few_shot=True, shots=2), train=train)
    assert two.identity != default.identity and two.settings.identity_extra() == {"shots": 2}
    assert two.fewshot is not None and two.fewshot.k == 2
    for settings, message in ((JudgeSettings(model="m1", shots=2), "zero-shot"),
                              (JudgeSettings(model="m1", few_shot=True, shots=0), "at least one"),
                              (JudgeSettings(model="m1", few_shot=True, shots=True),
                               "at least one")):
        with pytest.raises(InputError, match=message):
            make_judge("comparative-regression", bench, settings, train=train)
    with pytest.raises(InputError, match="unaligned has no in-context examples"):
        make_judge("unaligned", bench, JudgeSettings(model="m1", shots=2))


def test_fewshot_request_carries_examples_as_user_assistant_pairs() -> None:
    train, query = fewshot_benches()
    judge = ComparativeJudge(query, JudgeSettings(model="m", few_shot=True),
                             fewshot=FewShotSelector(train, "tfidf"))
    item = judge.items([0], 1)[0]
    req = judge.request(item)
    examples = judge.examples(0, item.attribute)
    roles = [m.role for m in req.messages]
    assert roles == ["system"] + ["user", "assistant"] * len(examples) + ["user"]
    first = examples[0]
    answer = json.loads(req.messages[2].content)
    assert list(answer) == [chr(65 + r) for r in range(len(first.responses))]
    assert [answer[k]["score"] for k in answer] == list(first.scores)
    assert list(answer["A"]) == ["reasoning", "score"]
    assert train.scenarios[first.train_index].prompt in req.messages[1].content


def test_a_query_is_never_its_own_example() -> None:
    train, _ = fewshot_benches()
    selector = FewShotSelector(train, "tfidf")
    judge = ComparativeJudge(train, JudgeSettings(model="m", few_shot=True), fewshot=selector)
    for s in range(5):
        assert s not in {e.train_index for e in judge.examples(s, train.attributes[0])}


def test_few_shot_without_training_split_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="training split"):
        make_judge("comparative-regression", tiny_bench(), JudgeSettings(model="m", few_shot=True))


# ---------------------------------------------------------------- prompt-aligned


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (1.0, "Strongly demonstrates care"), (0.83, "Demonstrates care"),
        (0.75, "Demonstrates care"), (0.67, "Somewhat demonstrates care"),
        (0.5, "Is neutral with respect to care"),
        (0.33, "Somewhat demonstrates a lack of care"), (0.25, "Demonstrates a lack of care"),
        (0.17, "Demonstrates a lack of care"), (0.0, "Strongly demonstrates a lack of care"),
    ],
)
def test_target_wording_follows_the_thresholds(value: float, words: str) -> None:
    assert describe("care", value) == words


def test_prompt_aligned_items_are_per_scenario_target_and_sample() -> None:
    bench = tiny_bench(n=3)
    judge = PromptAlignedJudge(bench, SETTINGS)
    targets = [json.dumps({"helpfulness": 1.0}), json.dumps({"verbosity": 0.0,
                                                              "coherence": 0.75})]
    items = judge.items(range(3), 2, targets)
    assert len(items) == 3 * 2 * 2 and len({it.key for it in items}) == 12
    item = next(it for it in items if it.target == targets[1])
    req = judge.request(item)
    assert target_instructions(json.loads(targets[1])) in req.messages[0].content
    assert "- Strongly demonstrates a lack of verbosity" in req.messages[0].content
    assert req.json_schema["properties"]["choice"]["enum"] == ["A", "B"]
    assert list(req.json_schema["properties"]) == ["reasoning", "choice"]
    _, shown = split_prompt(req.messages[-1].content)
    row = judge.parse(item, result_of({"reasoning": "r", "choice": "B"}))[0]
    assert bench.scenarios[item.scenario].responses[row["choice"]] == shown[1]


def test_unaligned_has_one_item_per_scenario_and_no_target() -> None:
    bench = tiny_bench(n=3)
    judge = UnalignedJudge(bench, SETTINGS)
    items = judge.items(range(3), 1, ["ignored"])
    assert len(items) == 3 and {it.target for it in items} == {""}
    assert "best response" in judge.request(items[0]).messages[0].content


# ---------------------------------------------------------------- consistency helpers


def test_mean_spread_and_majority() -> None:
    scores = np.array([[0.2, np.nan], [0.4, np.nan], [0.6, 0.5]])
    mean, spread = mean_and_spread(scores)
    assert mean[0] == pytest.approx(0.4) and spread[0] == pytest.approx(np.std([0.2, 0.4, 0.6], ddof=1))
    assert mean[1] == pytest.approx(0.5) and spread[1] == 0.0
    m, s = mean_and_spread(np.array([[np.nan], [np.nan]]))
    assert np.isnan(m[0]) and np.isnan(s[0])
    assert majority([1, 0, 1, None, 0]) == 0  # tie -> lowest index
    assert majority([2, 2, 1]) == 2
    assert majority([None, None]) is None


# ---------------------------------------------------------------- choice cache


def test_choice_cache_round_trip_majority_and_failures(tmp_path: Path) -> None:
    bench = tiny_bench(n=3)
    judge = PromptAlignedJudge(bench, SETTINGS)
    targets = [json.dumps({"helpfulness": 1.0})]
    cache = ChoiceCache(tmp_path)
    items = judge.items(range(3), 3, targets)
    rows = []
    for it in items:
        if it.scenario == 2:
            rows += judge.failure_rows(it, "transient: 503")
        else:
            choice = "B" if (it.scenario == 0 or it.sample == 0) else "A"
            ans = result_of({"reasoning": "r", "choice": choice})
            rows += judge.parse(it, ans)
    cache.append(rows[:4])
    cache.append(rows[4:])
    assert not list(tmp_path.glob("choices/.*tmp"))
    done = cache.completed_keys(bench.identity, judge.identity)
    assert done == {k for it in items if it.scenario != 2 for k in it.row_keys}
    got = cache.choices(bench, judge.identity, targets, 3)
    expect0 = [judge.order(0, targets[0], i)[1] for i in range(3)]
    expect1 = [judge.order(1, targets[0], i)[1 if i == 0 else 0] for i in range(3)]
    assert got[0, 0] == majority(expect0) and got[1, 0] == majority(expect1)
    assert got[2, 0] == -1


def test_choice_cache_refuses_another_schema_version(tmp_path: Path) -> None:
    (tmp_path / "choices").mkdir()
    old = CHOICE_SCHEMA.with_metadata({b"pluralign.schema_version": b"0",
                                        b"pluralign.kind": b"choices"})
    pq.write_table(old.empty_table(), tmp_path / "choices" / "part-old.parquet")
    with pytest.raises(CacheSchemaError, match=r"part-old\.parquet"):
        ChoiceCache(tmp_path).completed_keys()
    other = with_version(pa.schema([pa.field("x", pa.int32())]), "scores")
    (tmp_path / "choices" / "part-old.parquet").unlink()
    pq.write_table(other.empty_table(), tmp_path / "choices" / "part-x.parquet")
    with pytest.raises(CacheSchemaError, match="'scores'"):
        ChoiceCache(tmp_path).read()


# ---------------------------------------------------------------- fake answerer


def test_fake_answerer_without_noise_returns_the_true_labels_per_letter() -> None:
    bench = tiny_bench(n=4, k=3)
    answer = label_answerer(bench, noise=0.0)
    judge = ComparativeJudge(bench, SETTINGS)
    for item in judge.items(range(4), 2):
        req = judge.request(item)
        body = {"messages": [{"role": m.role, "content": m.content} for m in req.messages]}
        rows = judge.parse(item, result_of(answer(body)))
        sc = bench.scenarios[item.scenario]
        assert [r["score"] for r in rows] == [lab[item.attribute] for lab in sc.labels]
    reg = RegressionJudge(bench, SETTINGS)
    item = reg.items([3], 1)[7]
    req = reg.request(item)
    body = {"messages": [{"role": m.role, "content": m.content} for m in req.messages]}
    row = reg.parse(item, result_of(answer(body)))[0]
    assert row["score"] == bench.scenarios[3].labels[item.response][item.attribute]


def test_fake_answerer_picks_the_label_closest_response_for_prompt_aligned() -> None:
    bench = tiny_bench(n=8, k=2, seed=3)
    answer = label_answerer(bench, noise=0.0)
    judge = PromptAlignedJudge(bench, SETTINGS)
    target = {"helpfulness": 1.0}
    for item in judge.items(range(8), 1, [json.dumps(target)]):
        req = judge.request(item)
        body = {"messages": [{"role": m.role, "content": m.content} for m in req.messages]}
        row = judge.parse(item, result_of(answer(body)))[0]
        labels = [lab["helpfulness"] for lab in bench.scenarios[item.scenario].labels]
        assert labels[row["choice"]] == max(labels)


def test_choice_judges_identity_covers_the_new_settings() -> None:
    bench = tiny_bench()
    base = make_judge("prompt-aligned", bench, SETTINGS).identity
    for field, value in (("revision", "r"), ("backend", "vllm"), ("structured_output", "none"),
                         ("extra_body", '{"a":1}'), ("prompts", "ff")):
        other = JudgeSettings(**{**SETTINGS.as_dict(), field: value})
        assert make_judge("prompt-aligned", bench, other).identity != base, field


def test_defaults_keep_older_identities() -> None:
    # Settings added later are recorded only when set, so caches written before stay valid.
    assert SETTINGS.identity_extra() == {}


def test_describe_decodes_templates_by_hash_and_text() -> None:
    judge = make_judge("comparative-regression", tiny_bench(), SETTINGS)
    d = judge.describe()
    assert d["identity"] == judge.identity and d["settings"]["model"] == "m1"
    assert d["templates"]["system"]["text"].startswith("You are")
    assert len(d["templates"]["system"]["sha256"]) == 16
