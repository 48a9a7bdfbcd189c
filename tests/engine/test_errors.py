"""Every public error lives in engine/errors.py (and stays importable where it was defined);
messages name API arguments in backticks, and cli_text turns them into flags."""

from __future__ import annotations

import pytest

from pluralign.engine import errors
from pluralign.engine.errors import cli_text


@pytest.mark.parametrize(("module", "name"), [
    ("pluralign.engine.judges.base", "AnswerError"),
    ("pluralign.engine.spica.generate", "GenerationInterrupted"),
    ("pluralign.engine.data.sources", "DownloadError"),
    ("pluralign.engine.store.parts", "CacheCorruptError"),
    ("pluralign.engine.store.cache", "CacheCorruptError"),
    ("pluralign.engine.store.files", "DuplicateKeyError"),
    ("pluralign.actors.pool", "ReplicaStartError"),
    ("pluralign.actors.backends.vllm_replica", "VLLMUnavailable"),
])
def test_public_errors_are_defined_once_and_importable_where_they_were(module: str,
                                                                       name: str) -> None:
    import importlib

    cls = getattr(errors, name)
    assert cls.__module__ == "pluralign.engine.errors"
    assert getattr(importlib.import_module(module), name) is cls


def test_error_bases_are_kept() -> None:
    assert issubclass(errors.DownloadError, errors.DataNotFoundError)
    assert issubclass(errors.AnswerError, ValueError)
    assert issubclass(errors.DuplicateKeyError, ValueError)
    assert issubclass(errors.GenerationInterrupted, KeyboardInterrupt)
    for cls in (errors.CacheCorruptError, errors.ReplicaStartError, errors.VLLMUnavailable):
        assert issubclass(cls, errors.PluralignError)
    assert errors.DuplicateKeyError("a").key == "a"


@pytest.mark.parametrize(("api", "cli"), [
    ("raise `max_tokens`", "raise --max-tokens"),
    ("pass `data` or set PLURALIGN_DATA", "pass --data or set PLURALIGN_DATA"),
    ("pass `data=DIR` or set PLURALIGN_DATA=DIR", "pass --data DIR or set PLURALIGN_DATA=DIR"),
    ("`shots=3` sets examples; set `few_shot=True`", "--shots 3 sets examples; set --few-shot"),
    ("`use_ray=False`", "--no-use-ray"),
    ("`backend=vllm`: 2 replicas", "--backend vllm: 2 replicas"),
    ("no backticks, --flags or `` double `` ones", "no backticks, --flags or `` double `` ones"),
    ("run `pip install x` first", "run `pip install x` first"),  # code, not an argument
])
def test_cli_text_turns_arguments_into_flags(api: str, cli: str) -> None:
    assert cli_text(api) == cli


def test_cli_text_aliases_win_for_the_whole_text() -> None:
    aliases = {"few_shot=False": "--zero-shot", "engine_args": "--engine-arg"}
    assert cli_text("pass `few_shot=False`; `few_shot=True`", aliases) == \
        "pass --zero-shot; --few-shot"
    assert cli_text("`engine_args` entry 'x'", aliases) == "--engine-arg entry 'x'"


def test_engine_and_actor_messages_name_arguments_not_flags() -> None:
    """No string raised (or handed to a Failure) under engine/ or actors/ names a --flag."""
    import ast
    import re
    from pathlib import Path

    root = Path(errors.__file__).resolve().parents[1]
    flag = re.compile(r"(^|[\s(])--[a-z]")
    found = []
    for folder in ("engine", "actors"):
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                is_message = isinstance(node, ast.Raise) or (
                    isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("Failure", "InputError"))
                if not is_message:
                    continue
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str) \
                            and flag.search(sub.value):
                        found.append(f"{path.relative_to(root)}:{sub.lineno}: {sub.value!r}")
    assert not found, found
