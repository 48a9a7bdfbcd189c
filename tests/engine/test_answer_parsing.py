"""Answers as real engines send them: raw control characters inside JSON strings (valid to a
grammar-constrained decoder, refused by a strict parser), surrounding whitespace, code fences."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pluralign.engine.judges.base import AnswerError, answer_json, loads_answer
from pluralign.engine.run.backend import GenerationResult, Sample

VALUE = {"A": {"reasoning": "clear\tand\x15 kind", "score": 70}, "B": {"reasoning": "x",
                                                                      "score": 5}}


def raw(value: object) -> str:
    """JSON with control characters left raw inside strings."""
    return json.dumps(value).replace("\\t", "\t").replace("\\u0015", "\x15")


@pytest.mark.parametrize("wrap", [
    lambda t: t,
    lambda t: f"\n\n  {t}\n ",
    lambda t: f"```json\n{t}\n```",
    lambda t: f"  ```\n{t}```\n",
    lambda t: f"```JSON  \r\n{t}\r\n```",
])
def test_whitespace_fences_and_raw_control_characters_are_accepted(wrap) -> None:
    text = wrap(raw(VALUE))
    assert loads_answer(text) == VALUE
    assert answer_json(GenerationResult("i", (Sample(text),))) == VALUE


@pytest.mark.parametrize("text", ["", "```json\n```", '{"A": ', "not json", '{"a": 1} trailing'])
def test_anything_else_is_still_refused(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        loads_answer(text)
    with pytest.raises(AnswerError, match="not JSON"):
        answer_json(GenerationResult("i", (Sample(text),)))


TEXT = st.characters(blacklist_characters="\\")
"""No backslashes: the un-escaping below works on escapes json.dumps wrote."""


@settings(max_examples=80, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(TEXT),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(TEXT), c,
                                                                       max_size=3),
                    max_leaves=8))
def test_every_value_survives_raw_control_characters(value: object) -> None:
    text = json.dumps(value)
    for code in range(32):  # every control character a decoder may emit raw
        text = text.replace(f"\\u{code:04x}", chr(code))
    text = text.replace("\\t", "\t").replace("\\n", "\n").replace("\\r", "\r")
    assert loads_answer(text) == value
