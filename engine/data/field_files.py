"""Reading the field's dataset files as they are published: where each dataset comes from,
finding its files inside the folder a user downloaded (subfolders included), and CSV, JSONL
and parquet rows with errors that name the file, record and field.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pluralign.engine.errors import DataNotFoundError, InputError
from pluralign.engine.jsontypes import UntrustedJSON

SOURCES: dict[str, tuple[str, bool]] = {
    "global-opinions": ("https://huggingface.co/datasets/Anthropic/llm_global_opinions "
                        "(data/global_opinions.csv)", False),
    "opinionqa": ("https://github.com/tatsu-lab/opinions_qa (human_resp/<survey>/info.csv, "
                  "metadata.csv and responses.csv)", False),
    "valueprism": ("https://huggingface.co/datasets/allenai/ValuePrism (full/*.csv)", True),
    "overtonbench": ("https://huggingface.co/datasets/elinorpd/overtonbench (data/*.parquet)",
                     False),
    "prism": ("https://huggingface.co/datasets/HannahRoseKirk/prism-alignment (survey.jsonl, "
              "utterances.jsonl)", False),
    "community-alignment": ("https://huggingface.co/datasets/facebook/community-alignment-"
                            "dataset (community_alignment.csv at the repository root)", False),
    "persona": ("https://huggingface.co/datasets/SynthLabsAI/PERSONA (parquet under data/)",
                True),
    "dices": ("https://github.com/google-research-datasets/dices-dataset "
              "(350/diverse_safety_adversarial_dialog_350.csv, "
              "990/diverse_safety_adversarial_dialog_990.csv)", False),
}
"""Dataset -> (where to get it, gated)."""


def require(path: str | os.PathLike[str], dataset: str) -> Path:
    """``path`` if it exists, else an error saying where to get ``dataset``."""
    p = Path(path)
    if p.exists():
        return p
    where, gated = SOURCES.get(dataset, ("its publisher", False))
    terms = (" It is gated: accept its terms on that page and download it yourself; pluralign "
             "never fetches it." if gated else " Download it and pass its path.")
    raise DataNotFoundError(f"{dataset}: {p} not found. Get it from {where}.{terms}")


def find_files(path: Path, patterns: Sequence[str], dataset: str) -> list[Path]:
    """``path`` itself when it is a file, else every file under it (subfolders included, as
    parquet under ``data/``) matching one of ``patterns``, sorted; an error when none does."""
    if path.is_file():
        return [path]
    found = sorted({f for pat in patterns for f in path.rglob(pat) if f.is_file()
                    and not any(part.startswith(".") for part in f.relative_to(path).parts)})
    if not found:
        where, _ = SOURCES.get(dataset, ("its publisher", False))
        raise InputError(f"no {' or '.join(patterns)} file in the folder or its subfolders",
                         file=path, hint=f"{dataset} is published at {where}")
    return found


def csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV file with a header (the first data row is line 2); a UTF-8
    byte-order mark, as spreadsheet exports write, is not part of the first column's name."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    line = 1
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                yield line, row
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", file=path, record=f"after line {line}",
                         hint="save it as UTF-8") from None


def header(path: Path) -> list[str]:
    """The CSV file's column names."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            return next(csv.reader(f), [])
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", file=path, hint="save it as UTF-8") from None


def need_columns(path: Path, have: Sequence[str] | None, need: Sequence[str]) -> None:
    """An error naming the file and the first missing column, when any is missing."""
    missing = [c for c in need if c not in (have or ())]
    if missing:
        raise InputError(f"missing column(s) {missing}", file=path, field=missing[0],
                         hint=f"its columns: {', '.join(list(have or ())[:30]) or 'none'}")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, UntrustedJSON]]]:
    """(line number, object) for each non-blank line; an error names the file and line."""
    i = 0
    try:
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                if line.strip():
                    yield i, _json_object(line, path, i)
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", file=path, record=f"after line {i}" if i else None,
                         hint="save it as UTF-8") from None


def _json_object(line: str, path: Path, i: int) -> dict[str, UntrustedJSON]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"not JSON ({e.msg})", file=path, record=f"line {i}") from None
    if not isinstance(obj, dict):
        raise InputError("a line must be a JSON object", file=path, record=f"line {i}")
    return obj


def table_rows(path: Path) -> Iterator[tuple[str, dict[str, UntrustedJSON]]]:
    """(record name, row) of a parquet, JSONL or CSV file."""
    if path.suffix == ".jsonl":
        for i, row in read_jsonl(path):
            yield f"line {i}", row
    elif path.suffix == ".csv":
        for i, crow in csv_rows(path):
            yield f"line {i}", dict(crow)
    else:
        for i, row in enumerate(_parquet(path).to_pylist()):
            yield f"row {i}", row


def table_columns(path: Path) -> list[str]:
    """Column names of a parquet or CSV file (JSONL: the first object's keys)."""
    if path.suffix == ".csv":
        return header(path)
    if path.suffix == ".jsonl":
        return next((list(row) for _, row in read_jsonl(path)), [])
    return _parquet(path, names_only=True)


def _parquet(path: Path, names_only: bool = False) -> Any:
    """The parquet file's table (or column names); an error naming it when it is not one."""
    import pyarrow.parquet as pq  # only parquet layouts pay for the import

    if path.suffix != ".parquet":
        raise InputError("not a .parquet, .jsonl or .csv file", file=path)
    try:
        return list(pq.read_schema(path).names) if names_only else pq.read_table(path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise InputError(f"not a readable parquet file ({str(e)[:120]})", file=path) from None


def literal(text: str, path: Path, rec: str, name: str) -> UntrustedJSON:
    """A Python literal cell (``['a', 'b']``, ``{1.0: 'x'}``); an error names the cell."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise InputError(f"cannot read {text[:60]!r}", file=path, record=rec, field=name) from None


def count(skipped: dict[str, int], reason: str, n: int = 1) -> None:
    """Add ``n`` to the count of records skipped for ``reason``."""
    skipped[reason] = skipped.get(reason, 0) + n
