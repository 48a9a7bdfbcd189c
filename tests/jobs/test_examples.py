"""Every command the documentation shows runs as written, on the example inputs of
docs/examples/: each Markdown file (the README and docs/*.md but api.md, which
tests/test_docs.py runs as a notebook) is read block by block, in order, in a temporary folder
holding a copy of docs/examples/, and

- every ``pluralign ...`` line of a ``bash`` block runs (in this process) and must exit 0 and
  write what the docs say it writes (the files of its ``--out``);
- every ``$ pluralign ...`` line of a ``console`` block runs too, and its output must be the
  text the block shows under it;
- every ``python`` block is executed, in one namespace per file.

Commands that cannot run here are left out for a stated reason (:data:`SKIP`): a published
dataset, a real endpoint, a long-running server. LLM commands talk to the fake server the
test starts, in place of the ``pluralign fake-server --port 8089`` the docs start. Commands
reading HelpSteer2, and those reading what they wrote, skip without the published data.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from pluralign.jobs.cli import main
from tests.conftest import data_root

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "api.md")]
EXAMPLES = ROOT / "docs" / "examples"
FAKE_URL = "http://127.0.0.1:8089/v1"
"""The fake server's address in the docs (``pluralign fake-server --port 8089``)."""

SKIP: list[tuple[Callable[[list[str]], bool], str]] = [
    (lambda a: a[1] == "fake-server", "the test's own fake server stands in for it"),
    (lambda a: a[1] == "serve", "a long-running service (tests/jobs/test_serve.py covers it)"),
    (lambda a: a[1] == "view", "a long-running web viewer (tests/jobs/test_view*.py cover it)"),
    (lambda a: any(f in a for f in ("--valueprism", "--global-opinions", "--opinionqa", "--overtonbench")),
     "reads a published dataset, which pluralign does not ship"),
    (lambda a: _flag(a, "--dataset") not in (None, "ratings"),
     "reads a published dataset, which pluralign does not ship"),
    (lambda a: _flag(a, "--base-url") not in (None, FAKE_URL), "needs a real endpoint"),
    (lambda a: _flag(a, "--backend") == "vllm", "needs vLLM"),
]
"""(test on argv, reason) of the commands that are not run."""

FOLDER_OUTPUTS = {
    "sweep": ("summary.json", "per_target.parquet"),
    "jury": ("summary.json", "groups.parquet", "jurors.parquet", "scenarios.parquet",
             "selection.parquet"),
    "distribution": ("summary.json", "distribution.parquet"),
    "overton": ("summary.json", "overton.parquet"),
    "opinions": ("summary.json", "opinions.parquet"),
    "pareto": ("summary.json", "pareto.parquet"),
    "annotators": ("summary.json", "groups.parquet", "selection.parquet"),
}
"""Files each command writes into its ``--out`` folder, as its section of the docs lists them
(other commands' ``--out`` is one file)."""

NEEDS_DATA = re.compile(r"\bhelpsteer2\b|\bmic\b")


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv[:-1] else None


@dataclass
class Step:
    """One thing a doc asks to run: a shell command or a Python block."""

    kind: str
    """``bash`` (a command), ``console`` (a command and the output shown) or ``python``."""
    text: str
    """The command line, or the Python source."""
    line: int
    """Where it starts in the file (1-based)."""
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    shown: str = ""
    """For ``console``: the output the doc shows."""


def _blocks(text: str) -> Iterator[tuple[str, str, int]]:
    """(language, body, first body line) of every fenced block."""
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        yield m.group(1), m.group(2), text[: m.start(2)].count("\n") + 1


def _commands(line: str) -> Iterator[tuple[list[str], dict[str, str]]]:
    """(argv, environment assignments) of each command of a shell line (split at ``&&``,
    ``;``, ``|`` and ``&``; comments dropped)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    words: list[str] = []
    for tok in [*tokens, "&&"]:
        if tok in ("&&", ";", "|", "&", "||"):
            env = {}
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                key, _, value = words.pop(0).partition("=")
                env[key] = value
            if words:
                yield words, env
            words = []
        else:
            words.append(tok)


def steps(doc: Path) -> list[Step]:
    """Every ``pluralign`` command and Python block of ``doc``, in order."""
    out: list[Step] = []
    for lang, body, first in _blocks(doc.read_text()):
        if lang == "python":
            out.append(Step("python", body, first))
            continue
        if lang not in ("bash", "sh", "console"):
            continue
        lines = body.splitlines()
        i = 0
        while i < len(lines):
            start, text = i, lines[i]
            i += 1
            if lang == "console":
                if not text.startswith("$ "):
                    continue
                text = text[2:]
            while True:  # a trailing backslash, or an open quote, continues on the next line
                if text.endswith("\\") and i < len(lines):
                    text, i = text[:-1] + " " + lines[i].strip(), i + 1
                    continue
                try:
                    commands = list(_commands(text))
                except ValueError:  # no closing quotation
                    if i >= len(lines):
                        raise
                    text, i = text + "\n" + lines[i], i + 1
                    continue
                break
            shown: list[str] = []
            while lang == "console" and i < len(lines) and not lines[i].startswith("$ "):
                shown.append(lines[i])
                i += 1
            for argv, env in commands:
                if argv[0] == "pluralign":
                    out.append(Step(lang, text, first + start, argv, env, "\n".join(shown)))
    return out


def skip_reason(argv: list[str]) -> str | None:
    for test, reason in SKIP:
        if test(argv):
            return reason
    return None


def _check_outputs(argv: list[str], cwd: Path) -> None:
    out = _flag(argv, "--out")
    if out is None:
        return
    path = cwd / out
    expected = FOLDER_OUTPUTS.get(argv[1])
    if expected is None:
        assert path.is_file() and path.stat().st_size > 0, f"{out} not written"
        return
    missing = [f for f in expected if not (path / f).is_file()]
    assert not missing, f"{out}: {missing} not written"


def _strip(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def _written_by(argv: list[str], skipped_outputs: set[str]) -> str | None:
    """The output of a skipped command this one reads, if any."""
    for arg in argv[2:]:
        for out in skipped_outputs:
            if arg == out or arg.startswith(out.rstrip("/") + "/") or arg.endswith("=" + out):
                return out
    return None


@pytest.fixture
def doc_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with a copy of docs/examples/, a cache of its own and the published
    data where present; nothing is written outside it."""
    shutil.copytree(EXAMPLES, tmp_path / "docs" / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PLURALIGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PLURALIGN_PROGRESS", "0")
    monkeypatch.setenv("PLURALIGN_OFFLINE", "1")
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "matplotlib"))
    root = data_root()
    if root is None:
        monkeypatch.delenv("PLURALIGN_DATA", raising=False)
    else:
        monkeypatch.setenv("PLURALIGN_DATA", str(root))
    return tmp_path


RUNNABLE = [d for d in DOCS if steps(d)]
"""The docs with something to run (cluster.md shows only cluster commands)."""


@pytest.mark.slow
@pytest.mark.parametrize("doc", RUNNABLE, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_documented_commands_run(doc: Path, doc_sandbox: Path, capsys: Any,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    have_data = data_root() is not None
    llm_ready = find_spec("aiohttp") is not None
    server: Any = None
    ran: list[str] = []
    not_run: list[str] = []
    skipped_outputs: set[str] = set()
    namespace: dict[str, Any] = {}
    try:
        for step in steps(doc):
            where = f"{doc.name}:{step.line}"
            if step.kind == "python":
                if NEEDS_DATA.search(step.text) and not have_data:
                    not_run.append(f"{where} (python; needs the published data)")
                    continue
                read = next((o for o in skipped_outputs
                             if f'"{o}"' in step.text or f"'{o}'" in step.text), None)
                if read is not None:
                    not_run.append(f"{where} (python; reads {read}, written by a skipped step)")
                    continue
                exec(compile(step.text, where, "exec"), namespace)
                capsys.readouterr()
                ran.append(f"{where} (python)")
                continue
            argv = list(step.argv)
            reason = skip_reason(argv)
            if reason is None and NEEDS_DATA.search(" ".join(argv)) and not have_data:
                reason = "needs the published data (PLURALIGN_DATA)"
            if reason is None and _written_by(argv, skipped_outputs):
                reason = f"reads {_written_by(argv, skipped_outputs)}, written by a skipped step"
            if reason is None and argv[1] == "report" and find_spec("matplotlib") is None:
                reason = "needs pluralign[report] (matplotlib)"
            if reason is None and FAKE_URL in argv and not llm_ready:
                reason = "needs aiohttp (pluralign[distributed]) for the fake server"
            if reason is not None:
                not_run.append(f"{where} {shlex.join(argv)}: {reason}")
                out = _flag(argv, "--out")
                if out is not None:
                    skipped_outputs.add(out)
                continue
            if FAKE_URL in argv:
                if server is None:
                    from pluralign.actors.testing.fake_server import FakeOpenAIServer

                    server = FakeOpenAIServer(require_auth=False).start_in_thread()
                argv = [server.url if a == FAKE_URL else a for a in argv]
            with monkeypatch.context() as env:
                for key, value in step.env.items():
                    env.setenv(key, value)
                code = main(argv[1:])
            printed = capsys.readouterr()
            assert code == 0, (f"{where}: {shlex.join(step.argv)} exited {code}\n"
                               f"{printed.out[-3000:]}\n{printed.err[-3000:]}")
            _check_outputs(argv, doc_sandbox)
            if step.kind == "console":
                assert _strip(printed.out) == _strip(step.shown), \
                    f"{where}: the output differs from what the doc shows"
            ran.append(f"{where} {shlex.join(step.argv)}")
    finally:
        if server is not None:
            server.stop_thread()
    if not ran:
        pytest.skip(f"nothing to run in {doc.name}: " + "; ".join(not_run or ["no commands"]))
    if not_run and not have_data:
        pytest.skip(f"ran {len(ran)} steps; not run: " + "; ".join(not_run))


def test_steps_are_read_from_the_docs() -> None:
    """The reader finds the commands the docs show, continuation lines and all."""
    found = {d.name: [s for s in steps(d) if s.kind != "python"] for d in DOCS}
    argv = [s.argv for s in found["pluralism.md"]]
    assert ["pluralign", "annotators", "--path", "docs/examples/ratings.csv", "--scale", "1,5",
            "--demographics", "docs/examples/people.csv", "--group-by", "country", "--alpha",
            "0,1,inf", "--choices", "docs/examples/picks.json", "--out", "runs/ann"] in argv
    assert any(a[:2] == ["pluralign", "overton"] and "--responses" in a for a in argv)
    readme = found["README.md"]
    assert readme[0].argv[:2] == ["pluralign", "sweep"]  # after the venv and pip of line 1
    assert any(s.env == {"OPENAI_API_KEY": "dummy"} for s in readme)
    assert any(s.kind == "console" and s.shown for s in found["spica.md"])


def test_every_input_a_doc_names_is_an_example_and_every_example_is_named() -> None:
    named: set[Path] = set()
    for doc in [*DOCS, ROOT / "docs" / "api.md"]:
        text = doc.read_text()
        for m in re.finditer(r"docs/examples/[\w./-]+\w", text):
            named.add(ROOT / m.group(0))
        for m in re.finditer(r"\]\((examples/[^)#]+)\)", text):
            named.add(doc.parent / m.group(1))
    missing = sorted(str(p.relative_to(ROOT)) for p in named if not p.exists())
    assert not missing, f"the docs name example files that do not exist: {missing}"
    files = {p for p in EXAMPLES.rglob("*") if p.is_file()}
    unnamed = sorted(str(p.relative_to(ROOT)) for p in files
                     if p not in named and p.parent not in named)
    assert not unnamed, f"example files no doc names: {unnamed}"


def test_commands_with_input_files_use_the_examples() -> None:
    """Every input file of a command that runs here is one of docs/examples/ (or what an
    earlier step of its doc wrote), so a reader can run it as written."""
    inputs = ("--file", "--path", "--groups", "--choices", "--demographics", "--responses",
              "--prompts", "--spica-scenarios")
    for doc in DOCS:
        written: set[str] = set()
        for step in steps(doc):
            if step.kind == "python" or skip_reason(step.argv) is not None:
                continue
            argv = step.argv
            for flag in inputs:
                if flag == "--groups" and argv[1] != "jury":  # spica: group names
                    continue
                value = _flag(argv, flag)
                if value is not None and not value.startswith("docs/examples/"):
                    assert value in written, f"{doc.name}:{step.line} {flag} {value}"
            if "--spica-annotations" in argv:
                k = argv.index("--spica-annotations") + 1
                while k < len(argv) and not argv[k].startswith("--"):
                    assert argv[k].split("=", 1)[-1].startswith("docs/examples/")
                    k += 1
            out = _flag(argv, "--out")
            if out is not None:
                written.add(out)


@pytest.mark.skipif(os.name != "posix", reason="paths in the docs are POSIX")
def test_no_pluralign_command_hides_in_an_untyped_block() -> None:
    """Commands live in ``bash`` (or ``console``) blocks, where this test finds them."""
    for doc in [*DOCS, ROOT / "docs" / "api.md"]:
        for lang, body, first in _blocks(doc.read_text()):
            if lang in ("", "text"):
                bad = [ln for ln in body.splitlines() if ln.lstrip("$ ").startswith("pluralign ")]
                assert not bad, f"{doc.name}:{first}: {bad[0]!r} is not in a bash block"
