"""Alignment prompts: each setup shows exactly the right retrieved examples and labels."""

from __future__ import annotations

import pytest

from pluralign.engine.errors import InputError
from pluralign.engine.spica.prompts import BASE_INSTRUCTION, SETUPS, PromptExample, build_prompt
from pluralign.engine.spica.retrieval import Retriever
from pluralign.schemas.spica import RatingScale
from tests.engine.spica.helpers import bank, rater, scenario

QUERY = "vote election ballot today"


def _bank():
    return bank([
        # group g: response consensus [4.5, 2, 1.5]; strategy consensus [1.5, 4.5, 4.5]
        scenario("A", "vote election ballot", [
            rater("r1", ["g"], [5, 2, 1], [2, 4, 5], [1, 0, 1]),
            rater("r2", ["g"], [4, 2, 2], [1, 5, 4], [1, 1, 0]),
            rater("r5", ["h"], [1, 1, 5], [1, 1, 5], [0, 0, 0]),
        ]),
        # group g: everything 3 -> ties: best = first class, worst = first of the others
        scenario("B", "vote election", [rater("r3", ["g"], [3, 3, 3], [3, 3, 3], [0, 0, 1])]),
        scenario("C", "bread flour oven", [rater("r4", ["g"], [1, 5, 1])]),
    ])


def _ex(sid, prompt, role, cls, rating, label, content):
    return PromptExample(sid, prompt, role, cls, rating, label, content)


A, B = "vote election ballot", "vote election"
EXPECTED = {
    "P-I": [_ex("A", A, "best", "facts", 4.5, "Appropriate", "state the facts"),
            _ex("B", B, "best", "refuse", 3.0, "Undecided", "say no politely")],
    "C-I": [_ex("A", A, "best", "facts", 4.5, "Appropriate", "state the facts"),
            _ex("A", A, "worst", "refuse", 1.5, "Somewhat Inappropriate", "say no politely"),
            _ex("B", B, "best", "refuse", 3.0, "Undecided", "say no politely"),
            _ex("B", B, "worst", "facts", 3.0, "Undecided", "state the facts")],
    "P-R": [_ex("A", A, "best", "refuse", 4.5, "Appropriate", "A refuse text 1"),
            _ex("B", B, "best", "refuse", 3.0, "Undecided", "B refuse text 0")],
    "C-R": [_ex("A", A, "best", "refuse", 4.5, "Appropriate", "A refuse text 1"),
            _ex("A", A, "worst", "opine", 1.5, "Somewhat Inappropriate", "A opine text 0"),
            _ex("B", B, "best", "refuse", 3.0, "Undecided", "B refuse text 0"),
            _ex("B", B, "worst", "facts", 3.0, "Undecided", "B facts text 0")],
}


@pytest.fixture(scope="module")
def retrieved():
    b = _bank()
    r = Retriever(b)
    idx = r.retrieve([QUERY], "g", 2)[0]
    assert [b.ids[i] for i in idx] == ["A", "B"]
    return b, idx


@pytest.mark.parametrize("setup", ["P-I", "C-I", "P-R", "C-R"])
def test_setup_shows_exactly_the_right_examples(retrieved, setup):
    b, idx = retrieved
    p = build_prompt(b, QUERY, "g", setup, idx)
    assert list(p.examples) == EXPECTED[setup]
    assert [m.role for m in p.messages] == ["system", "user"]
    assert p.messages[1].content == QUERY
    system = p.system
    assert system.startswith(BASE_INSTRUCTION)
    noun = "approach" if setup.endswith("-I") else "reply"
    # Every shown item appears, labelled, in order; nothing else is shown.
    pos = 0
    for ex in EXPECTED[setup]:
        block = f"## {ex.label} {noun}:\n```{ex.content}```"
        found = system.find(block, pos)
        assert found >= 0, f"missing {block!r}"
        pos = found + len(block)
        assert f"```{ex.prompt}```" in system
    assert system.count("## ") == len(EXPECTED[setup])
    assert system.count("# Example ") == 2
    assert "C bread" not in system and "bread flour oven" not in system
    if setup.endswith("-R"):
        assert "say no politely" not in system  # strategies only in instruction setups


def test_control_is_the_base_instruction_only(retrieved):
    b, idx = retrieved
    p = build_prompt(b, QUERY, "g", "control", idx)
    assert p.system == BASE_INSTRUCTION and p.examples == ()


def test_other_group_gets_its_own_labels():
    b = _bank()
    p = build_prompt(b, QUERY, "h", "C-R", [0])
    assert [(e.role, e.cls, e.label) for e in p.examples] == [
        ("best", "opine", "Appropriate"), ("worst", "refuse", "Inappropriate")]


def test_scale_words_round_half_up():
    s = RatingScale()
    assert [s.label(x) for x in (1.0, 1.49, 1.5, 3.5, 4.49, 5.0)] == [
        "Inappropriate", "Inappropriate", "Somewhat Inappropriate", "Somewhat Appropriate",
        "Somewhat Appropriate", "Appropriate"]


def test_prompt_errors():
    b = _bank()
    with pytest.raises(InputError, match="unknown prompt setup"):
        build_prompt(b, QUERY, "g", "X-Y", [0])
    with pytest.raises(InputError) as exc:
        build_prompt(b, QUERY, "h", "P-R", [1])  # h rated nothing in B
    assert "scenario 'B'" in str(exc.value) and "group 'h'" in str(exc.value)
    assert SETUPS[0] == "control"
