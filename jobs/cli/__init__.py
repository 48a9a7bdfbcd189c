"""The ``pluralign`` command line.

Each subcommand lives in its own module of this package (``jobs/cli/sweep.py``, ...) exposing ``register(subparsers)``;
modules are discovered, so adding a command touches no other file. The command list for
``pluralign --help`` is read from the modules' source (their ``add_parser`` calls) without
importing them, and only the module of the command being run is imported: help stays fast
however heavy a command's imports are.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from pluralign.engine.run.signals import handled_by_command

DESCRIPTION = "Evaluate how well models can be steered to the values of people and groups."


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors suggest the closest option or choice and whose help
    is plain text (no reStructuredText double backticks from module docstrings)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = self._suggestion(message)
        # One line, like every other refusal: argparse's usage block (30 lines for sweep) would
        # bury it, and --help has it.
        self.exit(2, f"{self.prog}: error: {message}"
                     f"{f' (did you mean {hint}?)' if hint else ''}\n")

    def _suggestion(self, message: str) -> str | None:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            options = re.findall(r"'([^']*)'", choice.group(2)) or choice.group(2).split(", ")
            close = difflib.get_close_matches(choice.group(1), options, n=1)
            return str(close[0]) if close else None
        unknown = re.search(r"unrecognized arguments: (.*)", message)
        if unknown:
            flags = [t.split("=")[0] for t in unknown.group(1).split() if t.startswith("--")]
            for flag in flags:
                close = difflib.get_close_matches(flag, list(self._option_string_actions), n=1,
                                                  cutoff=0.6)
                if close:
                    return str(close[0])
        return None

    def format_help(self) -> str:
        return super().format_help().replace("``", "")

    def format_usage(self) -> str:
        return super().format_usage().replace("``", "")


def commands() -> dict[str, tuple[str, str]]:
    """Command name -> (module, one-line help), read from each command module's source."""
    out: dict[str, tuple[str, str]] = {}
    for path in sorted(Path(__file__).parent.glob("*.py")):
        for name, help_text in _registered(path):
            out[name] = (path.stem, help_text)
    return out


def _registered(path: Path) -> list[tuple[str, str]]:
    """(name, help) of the commands ``register(sub)`` adds: its ``sub.add_parser`` calls."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for fn in tree.body:
        if not (isinstance(fn, ast.FunctionDef) and fn.name == "register" and fn.args.args):
            continue
        sub = fn.args.args[0].arg
        for node in ast.walk(fn):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "add_parser" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == sub and node.args
                    and isinstance(node.args[0], ast.Constant)):
                help_text = next((k.value.value for k in node.keywords if k.arg == "help"
                                  and isinstance(k.value, ast.Constant)), "")
                found.append((str(node.args[0].value), str(help_text)))
    return found


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that command's module is imported and registered (the
    others appear as names with their help, enough for --help and for errors)."""
    from pluralign.engine.version import __version__

    parser = Parser(prog="pluralign", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"pluralign {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    table = commands()
    registered: set[str] = set()
    for name, (module, help_text) in table.items():
        if name in registered:
            continue
        if only is None or table.get(only, ("",))[0] != module:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        importlib.import_module(f"pluralign.jobs.cli.{module}").register(sub)
        registered |= {n for n, (m, _) in table.items() if m == module}
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _innermost(parser: argparse.ArgumentParser, args: argparse.Namespace,
               argv: Sequence[str]) -> argparse.ArgumentParser:
    """The (sub)parser of the command actually named, e.g. ``spica evaluate``'s."""
    current = parser
    while True:
        actions = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions:
            return current
        chosen = next((a.choices[t] for t in argv for a in actions if t in a.choices), None)
        if chosen is None or chosen is current:
            return current
        current = chosen


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; a stray or misspelt flag is reported by the subcommand's own parser."""
    parser = build_parser(only=_command_of(argv))
    args, extra = parser.parse_known_args(argv)
    if extra:
        _innermost(parser, args, argv).error(f"unrecognized arguments: {' '.join(extra)}")
    if not hasattr(args, "func"):  # a listed command whose module could not register
        parser.error(f"command {args.command!r} is not available")
    return args


def _close(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def check_names(args: argparse.Namespace) -> None:
    """A misspelt scorer or target-set name fails at once, listing every valid name."""
    from pathlib import Path

    from pluralign.engine.data.target_sets import TARGET_SET_NAMES
    from pluralign.engine.errors import InputError
    from pluralign.engine.scorers import scorer_names

    scorer = getattr(args, "scorer", None)
    if isinstance(scorer, str) and not scorer.startswith("predictions:"):
        names = scorer_names()  # the one registry: model-free, LLM judges, reward
        if not hasattr(args, "reward_attributes"):  # commands that cannot run the reward scorer
            names = [n for n in names if n != "reward"]
        if scorer not in names:
            listed = ", ".join(n if n != "predictions" else "predictions:FILE" for n in names)
            raise InputError(f"unknown scorer {scorer!r}", field="scorer",
                             hint=f"{_close(scorer, names)}scorers: {listed}")
    for spec in getattr(args, "targets", None) or []:
        inline = spec.lstrip().startswith(("{", "[")) or "=" in spec
        if not (spec in TARGET_SET_NAMES or inline or Path(spec).exists()):
            raise InputError(f"{spec!r} is neither a target set nor a file", field="targets",
                             hint=f"{_close(spec, TARGET_SET_NAMES)}sets: "
                                  f"{', '.join(TARGET_SET_NAMES)}"
                                  "; or target JSON files or folders, or inline targets "
                                  "such as helpfulness=1,verbosity=0")


def _flag_field(error: Exception, args: argparse.Namespace, aliases: dict[str, str]) -> str:
    """The error's text, its ``field`` written as the flag when the field is an argument of
    this command (not a field of an input file's record)."""
    from pluralign.engine.errors import InputError

    text = str(error)
    field = getattr(error, "field", None)
    if (isinstance(error, InputError) and field and error.record is None
            and re.fullmatch(r"[a-z][a-z0-9_]*", field) and hasattr(args, field)):
        flag = aliases.get(field, "--" + field.replace("_", "-"))
        text = text.replace(f"field {field!r}", f"field {flag!r}", 1)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status. From here on SIGINT and SIGTERM
    end a command cleanly (exit 130; a run that sends first stores what is paid), while it
    imports and parses too."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    with handled_by_command():
        try:
            return _run(args_list)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


def _run(args_list: list[str]) -> int:
    args = parse(args_list)
    from pluralign.engine.errors import PluralignError, cli_text
    from pluralign.engine.store import manifest
    from pluralign.jobs.plan import DryRunDone


    manifest.begin(str(args.command), ["pluralign", *args_list])
    try:
        check_names(args)
        rc = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except DryRunDone as e:  # --dry-run: the plan is the output
        print(e.plan.text())
        return 0
    except PluralignError as e:
        if args.debug:
            raise
        from pluralign.jobs.cli.args import CLI_ALIASES  # after parsing: --help stays light

        print(f"error: {cli_text(_flag_field(e, args, CLI_ALIASES), CLI_ALIASES)}", file=sys.stderr)
        return 2
    except Exception as e:  # one clear line for anything unexpected, traceback on --debug
        if args.debug:
            raise
        print(f"error: {type(e).__name__}: {e} (rerun with --debug for a traceback)",
              file=sys.stderr)
        return 1
    finally:
        manifest.end()
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
