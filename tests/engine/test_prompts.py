"""Prompts as data: a user file overrides judges' templates and definitions, is checked with
errors that name the file, table and key, and changes the scorer identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pluralign.engine.errors import InputError
from pluralign.engine.judges import JudgeSettings, load_prompts, make_judge
from pluralign.engine.judges.base import WorkItem
from pluralign.engine.judges.prompts import render
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


# ---------------------------------------------------------------- templates as str.format parses

@pytest.mark.parametrize(("template", "words"), [
    ("{question:{question.__class__.__mro__}}", ["inside the format spec of {question}"]),
    ("{attribute:{definition.__class__.__init__.__globals__}}", ["inside the format spec"]),
    ("{question:d}", ["format spec 'd'", "fill, alignment, width and precision"]),
    ("{scale:>400000000}", ["too wide", "1,000"]),
    ("{text:.1000001}", ["too wide"]),
    ("{question.__class__}", ["attribute or index access"]),
    ("{question[0]}", ["attribute or index access"]),
    ("{0} {}", ["unknown placeholder"]),
    ("{question!x}", ["conversion !x"]),
    ("{question:=5}", ["format spec '=5'"]),
    ("{question} " * 65, ["more than 64 placeholders"]),
    ("x" * 70_000, ["too long"]),
    ("{question", ["does not format", "{{"]),
])
def test_templates_are_parsed_as_str_format_does(tmp_path: Path, template: str,
                                                 words: list[str]) -> None:
    path = _file(tmp_path, json.dumps({"regression": {"user": template}}), "p.json")
    with pytest.raises(InputError) as e:
        load_prompts(path)
    message = str(e.value)
    assert str(path) in message and "record regression" in message and "'user'" in message
    assert all(w in message for w in words), message
    assert "\n" not in message and len(message) < 400


def test_simple_specs_render_as_str_format_would() -> None:
    values = {"question": "What?", "text": "abcdefgh", "attribute": "care", "scale": 100}
    for template in ("{question:>12}|{text:.3}|{attribute:*^10}", "{scale}/{question!r}",
                     "{{literal}} {text:<4.2s}"):
        assert render(template, **values) == template.format(
            **{k: str(v) for k, v in values.items()})
    with pytest.raises(InputError, match="attribute or index access"):
        render("{question.__class__}", question="q")


def test_a_definition_for_an_unknown_attribute_names_the_file(tmp_path: Path) -> None:
    bench = tiny_bench()
    path = _file(tmp_path, '[definitions]\nhelpfullness = "typo"\ncare = "a MIC attribute"\n')
    prompts = load_prompts(path)
    with pytest.raises(InputError) as e:
        prompts.check_definitions(bench.attributes)
    assert str(path) in str(e.value) and "'helpfullness'" in str(e.value)
    with pytest.raises(InputError, match="unknown attribute 'helpfullness'"):
        make_judge("comparative-regression", bench, SETTINGS, prompts=prompts)
    # a built-in attribute of another benchmark is fine (one file may serve both)
    load_prompts(_file(tmp_path, '[definitions]\ncare = "x"\n', "ok.toml")).check_definitions(
        bench.attributes)


@pytest.mark.parametrize(("name", "text"), [
    ("deep.json", "[" * 100_000 + "]" * 100_000),
    ("deep.toml", "a = " + "[" * 100_000 + "]" * 100_000 + "\n"),
])
def test_deeply_nested_files_name_the_file(tmp_path: Path, name: str, text: str) -> None:
    path = _file(tmp_path, text, name)
    with pytest.raises(InputError) as e:
        load_prompts(path)
    assert str(path) in str(e.value)


def test_credential_named_keys_in_prompt_files_are_never_echoed(tmp_path: Path) -> None:
    secret = "sk-prompt-file-planted-1234"
    for text in (f'[definitions]\napi_key = "{secret}"\n', f'[regression]\ntoken = "{secret}"\n',
                 f'[api_key]\nvalue = "{secret}"\n'):
        path = _file(tmp_path, text)
        with pytest.raises(InputError) as e:
            load_prompts(path).check_definitions(tiny_bench().attributes)
        assert secret not in str(e.value)
