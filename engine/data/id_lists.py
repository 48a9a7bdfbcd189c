"""The top level that the Overton and distribution files share: ``{"<key>": [record, ...]}``,
a non-empty list of records each parsed by its own function, their ids unique.

Errors name the file, the record (``key[i] ('id')``) and the field, as every loader's do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from pluralign.engine.errors import InputError


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=_HasId)


def parse_id_list(data: object, key: str, noun: str, parse_one: Callable[[object, int, str], R],
                  source: str) -> list[R]:
    """``parse_one(entry, i, source)`` for every entry of ``data[key]``, in order.

    ``data`` must be an object whose ``key`` is a non-empty list; a record whose id an earlier
    one has is refused as a "duplicate <noun> id". ``parse_one`` raises for a bad entry.
    """
    if not isinstance(data, dict) or not isinstance(data.get(key), list) or not data[key]:
        raise InputError(f"top level must be an object with a non-empty '{key}' list",
                         file=source, field=key)
    out: list[R] = []
    seen: set[str] = set()
    for i, entry in enumerate(data[key]):
        record = parse_one(entry, i, source)
        if record.id in seen:
            raise InputError(f"duplicate {noun} id", file=source,
                             record=f"{key}[{i}] ({record.id!r})", field="id")
        seen.add(record.id)
        out.append(record)
    return out
