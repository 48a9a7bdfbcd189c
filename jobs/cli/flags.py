"""Command-line flags generated from config dataclasses: one source for each default, type,
choice and help text.

A config's fields are the flags (``max_tokens`` -> ``--max-tokens``); a field's docstring (the
string literal under it) is the help; ``Literal`` types are the choices; a default is written
once, on the field. The command line may rename a flag (``engine_args`` -> ``--engine-arg``,
repeated) or give a boolean its negative spelling (``few_shot`` -> ``--few-shot`` /
``--zero-shot``), but never restates a default or a help text.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import itertools
import textwrap
import types
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal, TypeVar

from pluralign.jobs.configs import Range, numeric_fields, numeric_problem

C = TypeVar("C")

Adder = argparse.ArgumentParser | argparse._ArgumentGroup


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its docstring (the string literal right under the field), whitespace
    folded, for ``cls`` and its dataclass bases. Python keeps no attribute docstrings at run
    time, so they are read from the class source."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if "__dataclass_fields__" not in vars(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = next(n for n in tree.body if isinstance(n, ast.ClassDef)).body
        for node, after in itertools.pairwise(body):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def flag_of(name: str) -> str:
    """``max_tokens`` -> ``--max-tokens``."""
    return "--" + name.replace("_", "-")


def dest_of(name: str, rename: Mapping[str, str] | None = None) -> str:
    """Where the parsed value of field ``name`` lands: the field's name, or for a renamed flag
    the flag's own name (``--reward-attributes`` -> ``reward_attributes``), so two configs'
    fields of one name never share a value by accident."""
    flag = (rename or {}).get(name)
    return flag.lstrip("-").replace("-", "_") if flag else name


def _plain(tp: Any) -> tuple[Any, bool]:
    """(the type without ``None``, whether None was allowed)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True  # noqa: UP007
    return tp, False


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _help(doc: str, default: Any, show_default: bool) -> str:
    text = doc.replace("%", "%%")
    shown = default is not None and default is not False and default not in ((), [], "")
    if show_default and shown:
        text += f" (default: {default})"
    return text


def add_config_flags(
    parser: Adder,
    cls: type,
    *,
    rename: Mapping[str, str] | None = None,
    negative: Mapping[str, str] | None = None,
    skip: Collection[str] = (),
    only: Collection[str] | None = None,
    required: Collection[str] = (),
    cli_defaults: Mapping[str, Any] | None = None,
    nargs: Collection[str] = (),
    types: Mapping[str, Callable[[str], Any]] | None = None,
    extra_help: Mapping[str, str] | None = None,
    metavars: Mapping[str, str] | None = None,
) -> list[str]:
    """Add a flag for each field of the dataclass ``cls`` (all of them, or ``only``, less
    ``skip``); a flag the parser already has is left as it is (two configs may share
    ``--model``). ``rename`` maps a field to its flag; ``negative`` gives a boolean field the
    flag that sets it False (a field defaulting to True gets only that one). ``cli_defaults``
    are the few deliberate differences of the command line from the API (a sweep uses Ray
    unless ``--no-ray``; the API runs in-process unless asked). A tuple field named in ``nargs``
    takes its values after one flag (``--targets all high``; other tuples repeat the flag);
    ``types`` parses a field's text (a size, say) so bad input fails while parsing;
    ``extra_help`` adds what only the command line can say (the names a flag accepts);
    ``metavars`` names a value in the usage line (``PATH``, ``JSONL``). A field
    whose type is itself a config dataclass adds that config's flags. Returns the fields
    added."""
    rename = rename or {}
    negative = negative or {}
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    existing = _options(parser)
    added: list[str] = []
    for f in dataclasses.fields(cls):
        if f.name in skip or (only is not None and f.name not in only):
            continue
        flag = rename.get(f.name, flag_of(f.name))
        if flag in existing or negative.get(f.name) in existing:
            continue
        tp, optional = _plain(hints[f.name])
        if dataclasses.is_dataclass(tp) and isinstance(tp, type) and not optional:
            added += add_config_flags(parser, tp, rename=rename, negative=negative, skip=skip,
                                      required=required, cli_defaults=cli_defaults,
                                      nargs=nargs, types=types, extra_help=extra_help,
                                      metavars=metavars)
            continue
        default = (cli_defaults or {}).get(f.name, _default(f))
        doc = docs.get(f.name, "")
        dest = dest_of(f.name, rename)
        if extra_help and f.name in extra_help:
            doc = f"{doc} {extra_help[f.name]}".strip()
        kwargs: dict[str, Any] = {"dest": dest,
                                  "metavar": (metavars or {}).get(f.name, f.name.upper())}
        if tp is bool:
            if f.name in negative:
                group = parser.add_mutually_exclusive_group() if optional else parser
                if default is not True:
                    group.add_argument(flag, action="store_true", default=default,
                                       help=_help(doc, None, False), dest=dest)
                group.add_argument(negative[f.name], action="store_false", dest=dest,
                                   default=default,
                                   help=f"the opposite of {flag}" if default is not True
                                   else _help(doc, None, False))
            else:
                parser.add_argument(flag, action="store_true", default=default,
                                    help=_help(doc, None, False), dest=dest)
            added.append(f.name)
            continue
        origin = typing.get_origin(tp)
        if origin is Literal:
            kwargs["choices"] = typing.get_args(tp)
            del kwargs["metavar"]
        elif origin is tuple:
            if f.name in nargs:
                kwargs["nargs"] = "+"
            else:
                kwargs["action"] = "append"
            default = list(default or ())
        elif tp in (int, float):
            kwargs["type"] = number(*numeric_fields(cls)[f.name])
        if types and f.name in types:
            kwargs["type"] = types[f.name]
        if f.name in required:
            kwargs["required"] = True
        parser.add_argument(flag, default=default, help=_help(doc, default, True), **kwargs)
        added.append(f.name)
    return added


def number(kind: type, limits: Range) -> Callable[[str], int | float]:
    """argparse type of a numeric flag: an int or float within ``limits`` (NaN, infinities and
    out-of-range values refused while parsing, naming the flag and the range)."""
    def parse(text: str) -> int | float:
        try:
            value: int | float = int(text) if kind is int else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{'an integer' if kind is int else 'a number'} is wanted, got {text!r}"
            ) from None
        why = numeric_problem(value, kind, limits)
        if why is not None:
            raise argparse.ArgumentTypeError(f"{why}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _options(parser: Adder) -> set[str]:
    """Every option string the parser (or the group's parser) has."""
    return set(parser._option_string_actions)


def config_from_args(cls: type[C], args: argparse.Namespace,
                     rename: Mapping[str, str] | None = None, /, **overrides: Any) -> C:
    """The config ``cls`` the parsed flags describe: each field from its flag's value (read
    where :func:`add_config_flags` with the same ``rename`` put it), the field's default where
    the command has no such flag, then ``overrides``."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in overrides:
            continue
        value = getattr(args, dest_of(f.name, rename), _default(f))
        tp, optional = _plain(hints[f.name])
        if dataclasses.is_dataclass(tp) and isinstance(tp, type) and not optional:
            values[f.name] = config_from_args(tp, args, rename)
            continue
        if typing.get_origin(tp) is tuple and value is not None:
            value = tuple(value)
        if value is None and f.default is dataclasses.MISSING and \
                f.default_factory is dataclasses.MISSING:
            value = tp() if tp in (str, int, float) else value
        values[f.name] = value
    values.update(overrides)
    return cls(**values)
