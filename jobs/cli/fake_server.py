"""``pluralign fake-server``: run the FAKE OpenAI-compatible server in the foreground.

Its flags are made from the fields of :class:`~pluralign.actors.testing.fake_server.FakeServerConfig`
and their docstrings, so a knob added to the server is a flag as soon as it is a field:
``fault_xxx`` becomes ``--fault-xxx`` (a share in [0, 1]), a bool that is off by default
``--xxx`` and one that is on by default ``--no-xxx``. Fields that cannot be flags are listed
in :data:`NOT_FLAGS`.
"""

from __future__ import annotations

import argparse
import math
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from typing import Any

from pluralign.jobs.cli.flags import field_docs

NOT_FLAGS: dict[str, str] = {
    "answerer": "a Python function: pass it to FakeOpenAIServer in code",
}
"""Config fields deliberately without a flag, and why."""

_OPTIONS = {"require_auth": "--no-auth"}
"""Flags not named after their field (kept as they were before flags were derived)."""

_HELP = {
    "require_auth": "Accept requests without an Authorization: Bearer key "
                    "(default: answer them 401).",
    "logprobs": "Never answer top_logprobs, like an endpoint without them "
                "(default: answer them when a request asks).",
}
"""Help of the ``--no-xxx`` flags, whose field docstrings describe the opposite."""


def _bounded(kind: type[int] | type[float], lo: float | None = None, hi: float | None = None,
             *, open_lo: bool = False, what: str) -> Callable[[str], int | float]:
    """An argparse ``type``: ``kind`` within [lo, hi] (``(lo, hi]`` with ``open_lo``); a value
    outside is refused as ``argument --flag: must be <what>, got <value>``."""

    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {what}, got {text!r} (not {'an integer' if kind is int else 'a number'})"
            ) from None
        low = lo is not None and (value <= lo if open_lo else value < lo)
        if not math.isfinite(value) or low or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return convert


_SHARE = _bounded(float, 0.0, 1.0, what="a share in [0, 1]")
_NON_NEGATIVE = _bounded(float, 0.0, what="a number >= 0")
_TYPES: dict[str, Callable[[str], Any]] = {
    "port": _bounded(int, 0, 65535, what="a port in [0, 65535] (0: a free one)"),
    "rpm": _bounded(int, 1, what="an integer >= 1"),
    "rpm_window": _bounded(float, 0.0, open_lo=True, what="a number of seconds > 0"),
    "force_status": _bounded(int, 100, 599, what="an HTTP status in [100, 599]"),
    "max_choices": _bounded(int, 1, what="an integer >= 1"),
}
"""Argparse types of fields whose range is narrower than their type's."""


@dataclass(frozen=True)
class Flag:
    """One config field's flag."""

    field: str
    """The FakeServerConfig field it sets (also its argparse ``dest``)."""
    option: str
    """The flag, e.g. ``--fault-truncated`` or ``--no-auth``."""
    kwargs: dict[str, Any]
    """The rest of its ``add_argument`` call (type, default, action, help, metavar)."""


def config_flags() -> list[Flag]:
    """A flag for every FakeServerConfig field but :data:`NOT_FLAGS`, in field order.

    Raises TypeError for a field whose type has no flag form (add it to NOT_FLAGS or here).
    """
    from pluralign.actors.testing.fake_server import FakeServerConfig

    docs = field_docs(FakeServerConfig)
    hints = typing.get_type_hints(FakeServerConfig)
    names = {f.name: _option(f.name, f.default) for f in fields(FakeServerConfig)}
    out = []
    for f in fields(FakeServerConfig):
        if f.name in NOT_FLAGS:
            continue
        if f.default is MISSING:
            raise TypeError(f"FakeServerConfig.{f.name} has no default: a flag needs one")
        kind, optional = _base_type(hints[f.name])
        help_text = _HELP.get(f.name) or _help(docs.get(f.name, ""), names)
        kwargs: dict[str, Any] = {"dest": f.name, "default": f.default}
        if kind is bool and not optional:
            kwargs["action"] = "store_false" if f.default else "store_true"
            kwargs["help"] = help_text
        elif kind in (int, float, str):
            convert = (_SHARE if f.name.startswith("fault_") else
                       _TYPES.get(f.name, _NON_NEGATIVE if kind is float else kind))
            shown = "none" if f.default is None else f.default
            kwargs.update(type=convert, help=f"{help_text.removesuffix('.')} (default: {shown}).")
            if convert is _SHARE:
                kwargs["metavar"] = "SHARE"
        else:
            raise TypeError(f"FakeServerConfig.{f.name}: no flag for type {hints[f.name]}; "
                            "add it to NOT_FLAGS in jobs/cli/fake_server.py or give it a flag")
        out.append(Flag(f.name, names[f.name], kwargs))
    return out


def _option(name: str, default: Any) -> str:
    if name in _OPTIONS:
        return _OPTIONS[name]
    stem = name.replace("_", "-")
    return f"--no-{stem}" if default is True else f"--{stem}"


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(type, whether None is allowed) of ``X`` or ``X | None``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else hint), True
    return hint, False


def _help(doc: str, options: dict[str, str]) -> str:
    """A field docstring as flag help: ``other_field`` named by its flag, % escaped."""
    for name, option in options.items():
        doc = doc.replace(f"``{name}``", option)
    return doc.replace("%", "%%")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "fake-server",
        help="run a fake OpenAI-compatible server on loopback (tests, offline demos)",
        description="A FAKE OpenAI-compatible chat server: schema-valid random answers, "
                    "optional RPM limit and injected faults. Loopback only. Prints its URL. "
                    "Each request draws at most one fault, so the --fault-* shares may add "
                    "up to at most 1.")
    for flag in config_flags():
        p.add_argument(flag.option, **flag.kwargs)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pluralign.actors.testing.fake_server import (
        SHARE_TOLERANCE,
        FakeOpenAIServer,
        FakeServerConfig,
    )
    from pluralign.engine.errors import InputError

    flags = config_flags()
    shares = {f.option: getattr(args, f.field) for f in flags if f.field.startswith("fault_")}
    total = sum(shares.values())
    if total > 1.0 + SHARE_TOLERANCE:
        given = ", ".join(f"{option} {share:g}" for option, share in shares.items() if share)
        raise InputError(f"the fault shares add up to {total:g} ({given}); each request draws "
                         "at most one fault, so they may add up to at most 1",
                         hint="lower some --fault-* shares")
    try:
        config = FakeServerConfig(**{f.field: getattr(args, f.field) for f in flags})
    except ValueError as e:
        raise InputError(str(e), hint="see pluralign fake-server --help") from e

    def ready(url: str) -> None:
        print(url, flush=True)
        print("fake server (not a model): GET /fake/stats for counters; Ctrl-C stops",
              file=sys.stderr, flush=True)

    FakeOpenAIServer(config).serve_forever(on_ready=ready)
    return 0
