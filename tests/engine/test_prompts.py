"""Prompts as data: a user file overrides judges' templates and definitions, is checked with
errors that name the file, table and key, and changes the scorer identity."""

from __future__ import annotations

from pathlib import Path

import pytest

from pluralign.engine.errors import InputError
from pluralign.engine.judges import JudgeSettings, load_prompts, make_judge
from pluralign.engine.judges.base import WorkItem
from tests.engine.test_judges import tiny_bench

SETTINGS = JudgeSettings(model="m1")

TOML = '''
[definitions]
helpfulness = "Our test definition of helpfulness."

[comparative-regression]
response = "- {letter}: {text}"
separator = "\\n"

[prompt-aligned]
system = "Pick for someone who is:\\n{criteria}"
'''


def _file(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_prompt_file_overrides_templates_and_definitions(tmp_path: Path) -> None:
    prompts = load_prompts(_file(tmp_path, TOML))
    bench = tiny_bench()
    ours = make_judge("comparative-regression", bench, SETTINGS)
    theirs = make_judge("comparative-regression", bench, SETTINGS, prompts=prompts)
    assert theirs.identity != ours.identity
    item = next(i for i in theirs.items([0], 1) if i.attribute == "helpfulness")
    msgs = theirs.request(item).messages
    assert "Our test definition of helpfulness." in msgs[0].content
    assert "\n- A: " in msgs[-1].content and "Response A:" not in msgs[-1].content
    assert theirs.describe()["templates"]["response"]["text"] == "- {letter}: {text}"
    aligned = make_judge("prompt-aligned", bench, SETTINGS, prompts=prompts)
    it = aligned.items([0], 1, ['{"helpfulness": 1.0}'])[0]
    assert aligned.request(it).messages[0].content.startswith("Pick for someone who is:\n- ")
    assert aligned.identity != make_judge("prompt-aligned", bench, SETTINGS).identity


def test_json_layout_is_the_same_and_hash_follows_content(tmp_path: Path) -> None:
    a = load_prompts(_file(tmp_path, '{"regression": {"user": "Q {question} R {text}"}}',
                           "a.json"))
    b = load_prompts(_file(tmp_path, '[regression]\nuser = "Q {question} R {text}"\n'))
    assert a.sha256 == b.sha256 and a.for_judge("regression")["user"].startswith("Q ")
    c = load_prompts(_file(tmp_path, '[regression]\nuser = "Q {question} | {text}"\n', "c.toml"))
    assert c.sha256 != a.sha256


@pytest.mark.parametrize(("text", "words"), [
    ('[regression]\nuser = "{question} {bogus}"\n', ["record regression", "'user'", "bogus"]),
    ('[regression]\nsistem = "x"\n', ["'sistem'", "unknown template"]),
    ('[judge]\nsystem = "x"\n', ["unknown table", "judge"]),
    ('[definitions]\nhelpfulness = ""\n', ["definitions", "'helpfulness'"]),
    ('[regression\n', ["does not parse"]),
])
def test_bad_prompt_files_name_file_table_and_key(tmp_path: Path, text: str,
                                                  words: list[str]) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(InputError) as e:
        load_prompts(path)
    message = str(e.value)
    assert str(path) in message and all(w in message for w in words), message


def test_choice_judges_refuse_few_shot_rather_than_ignore_it() -> None:
    few = JudgeSettings(model="m1", few_shot=True)
    with pytest.raises(InputError, match="no in-context examples"):
        make_judge("unaligned", tiny_bench(), few)
    # prompt-aligned has examples (steerable-pluralism paper, Table 2) but never without the training split
    with pytest.raises(InputError, match="training split"):
        make_judge("prompt-aligned", tiny_bench(), few)


def test_work_item_type_is_unchanged() -> None:
    # prompts change requests, never the shape of work items
    judge = make_judge("regression", tiny_bench(), SETTINGS)
    assert all(isinstance(i, WorkItem) for i in judge.items([0], 1))
