"""Where benchmark data lives, loading benchmarks by name, and the HelpSteer2 first-use download.

Data folder: the ``data`` argument, else ``$PLURALIGN_DATA``, else the user data dir
(``$XDG_DATA_HOME`` or ``~/.local/share``) ``/pluralign``.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping
from pathlib import Path

from pluralign.engine.data.benchmark import MAX_RESPONSES, Benchmark, make_benchmark
from pluralign.engine.data.loaders import (
    benchmark_family,
    known_benchmark,
    load_helpsteer2_rows,
    load_mic_csv,
    load_steerable_json,
)
from pluralign.engine.data.synthetic import synthetic_benchmark
from pluralign.engine.data.targets import TargetSet, load_target_files
from pluralign.engine.errors import DataNotFoundError, InputError
from pluralign.engine.errors import DownloadError as DownloadError
from pluralign.engine.store.files import require_memory
from pluralign.engine.store.hashing import Hasher

log = logging.getLogger(__name__)

HELPSTEER2_URL = (
    "https://raw.githubusercontent.com/ITM-Kitware/steerable-pluralism-llm-regression/"
    "85a65bd6621364d680fed11a13b4c34d2e877ace/data/helpsteer2"
)
"""Published reframed HelpSteer2 files (pinned commit); ``$PLURALIGN_HELPSTEER2_URL`` overrides."""

HELPSTEER2_SHA256: dict[str, str] = {
    "train.json": "53da7f4e3f3c1f78ac6a9d7fe5a469000226b0c2340548faaaa0247da1ea8ff0",
    "eval.json": "7c8cd83a5224b7c7fec1ea52d79f9c53c5b9214d5fa6398d74246dfb0d5d2cf5",
}
"""Expected SHA-256 of each downloaded file; a download that differs is discarded."""

DOWNLOAD_TIMEOUT_S = 60.0
"""Socket timeout for each download request."""

SYNTHETIC_DEFAULTS: dict[str, int] = {"S": 336, "R_min": 2, "R_max": 4, "A": 6, "L": 7, "seed": 0}
"""Shape of ``synthetic`` without parameters: MIC-shaped."""

_SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SPLIT_NAMES = {"train", "eval", "test", "dev", "val", "validation"}


def user_data_dir() -> Path | None:
    """``$XDG_DATA_HOME/pluralign``, else ``~/.local/share/pluralign``; None without a home."""
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "pluralign"
    try:
        return Path.home() / ".local" / "share" / "pluralign"
    except RuntimeError:  # no HOME and no passwd entry
        return None


def resolve_data_dir(arg: str | os.PathLike[str] | None) -> Path | None:
    """The data folder: ``arg`` (the ``data`` argument), else ``$PLURALIGN_DATA``, else the user data dir."""
    if arg:
        return Path(arg).expanduser()
    env = os.environ.get("PLURALIGN_DATA")
    if env:
        return Path(env).expanduser()
    return user_data_dir()


def _search_dirs(data_dir: str | os.PathLike[str] | None) -> list[Path]:
    """Folders looked in, in order: the resolved data folder, then the user data dir."""
    dirs = [d for d in (resolve_data_dir(data_dir), user_data_dir()) if d is not None]
    return list(dict.fromkeys(dirs))


def _find(relative: str, data_dir: str | os.PathLike[str] | None) -> Path | None:
    for d in _search_dirs(data_dir):
        if (d / relative).is_file():
            return d / relative
    return None


def load_benchmark(
    name: str,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool | None = None,
) -> Benchmark:
    """A benchmark split by name.

    ``helpsteer2`` (``helpsteer2/{split}.json``; downloaded on first use unless ``download`` is
    False or ``$PLURALIGN_OFFLINE=1``), ``mic`` (``mic/{split}.json`` if prepared, else
    ``mic/MIC.csv`` split by :func:`load_mic_csv`), ``synthetic[:S=336,R=2-4,A=6,L=7,seed=0]``,
    ``helpsteer2-raw:PATH`` (raw rows) or a path to a steerable JSON file.
    """
    if name == "synthetic" or name.startswith("synthetic:"):
        return synthetic_split(name, split)
    if name in ("helpsteer2", "mic") and not _SPLIT_NAME.fullmatch(split):
        # The split names a file under the data folder: a name, never a path.
        raise InputError(f"split {split[:40]!r} is not a split name", field="split",
                         hint="letters, digits, '-' and '_' only, e.g. eval or train")
    if name.startswith("helpsteer2-raw:"):
        return load_helpsteer2_rows(name.partition(":")[2], split)
    if name == "helpsteer2":
        return load_steerable_json(_helpsteer2_file(split, data_dir, download), name, split)
    if name == "mic":
        return _load_mic(split, data_dir)
    path = Path(name).expanduser()
    if path.suffix.lower() == ".json" or path.exists():
        if not path.is_file():
            raise DataNotFoundError(f"benchmark file {name} not found")
        return load_steerable_json(path, _name_from_path(path), split)
    raise InputError(
        f"unknown benchmark {name!r}", field="benchmark",
        hint="use helpsteer2, mic, synthetic[:S=..,R=..,A=..,L=..,seed=..], "
             "helpsteer2-raw:PATH or a path to a steerable JSON file",
    )


def _name_from_path(path: Path) -> str:
    """``.../helpsteer2/eval.json`` is named ``helpsteer2``; ``mine.json`` is ``mine``."""
    stem = path.stem
    if stem.lower() in _SPLIT_NAMES and path.resolve().parent.name:
        return path.resolve().parent.name
    return stem


# ---------------------------------------------------------------- synthetic


def parse_synthetic(spec: str) -> dict[str, int]:
    """``synthetic:S=336,R=2-4,A=6,L=7,seed=0`` -> shape parameters (missing ones default)."""
    params = dict(SYNTHETIC_DEFAULTS)
    body = spec.partition(":")[2]
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        try:
            if not sep:
                raise ValueError("expected KEY=VALUE")
            if key == "R":
                lo, _, hi = value.partition("-")
                params["R_min"], params["R_max"] = int(lo), int(hi or lo)
            elif key in ("S", "A", "L", "seed"):
                params[key] = int(value)
            else:
                raise ValueError("unknown key (use S, R, A, L, seed)")
        except ValueError as e:
            raise InputError(f"bad synthetic parameter {part!r}: {e}", file=spec,
                             field=key or part) from None
    _check_synthetic(params, spec)
    return params


def _check_synthetic(p: Mapping[str, int], spec: str) -> None:
    rules = [("S", p["S"] >= 1, "at least 1 scenario"),
             ("R", 2 <= p["R_min"] <= p["R_max"] <= MAX_RESPONSES,
              f"responses must be 2 <= min <= max <= {MAX_RESPONSES}"),
             ("A", p["A"] >= 1, "at least 1 attribute"),
             ("L", p["L"] >= 2, "at least 2 levels"),
             ("seed", p["seed"] >= 0, "a non-negative seed")]
    for key, ok, why in rules:
        if not ok:
            raise InputError(f"bad synthetic parameter: {why}", file=spec, field=key)
    # Measured: ~400 bytes per scenario plus ~(150 + 45 per attribute) per response.
    per_scenario = 400 + (p["R_min"] + p["R_max"]) / 2 * (150 + 45 * p["A"])
    require_memory(p["S"] * per_scenario, f"a synthetic benchmark of {p['S']:,} scenarios",
                   file=spec, field="S", hint="use fewer scenarios")


def synthetic_split(spec: str, split: str) -> Benchmark:
    """A synthetic split. ``eval`` uses the seed as given; other splits derive their own seed
    from the split name, so train and eval differ but each is reproducible."""
    p = parse_synthetic(spec)
    seed = p["seed"] if split == "eval" else (p["seed"] + zlib.crc32(split.encode())) % 2**32
    bench = synthetic_benchmark(p["S"], (p["R_min"], p["R_max"]), p["A"], p["L"], seed=seed)
    return make_benchmark("synthetic", split, bench.attributes, bench.levels, bench.scenarios,
                          source=spec)


# ---------------------------------------------------------------- MIC


def _load_mic(split: str, data_dir: str | os.PathLike[str] | None) -> Benchmark:
    prepared = _find(f"mic/{split}.json", data_dir)
    if prepared is not None:
        return load_steerable_json(prepared, "mic", split)
    csv_path = _find("mic/MIC.csv", data_dir)
    if csv_path is None:
        where = " or ".join(str(d / "mic" / "MIC.csv") for d in _search_dirs(data_dir))
        raise DataNotFoundError(
            f"MIC data not found (looked for {where}): MIC is gated by a data-use agreement, "
            "so get MIC.csv from https://github.com/SALT-NLP/mic and put it at DIR/mic/MIC.csv, "
            "then pass `data=DIR` or set PLURALIGN_DATA=DIR"
        )
    splits = load_mic_csv(csv_path, procedure="published")  # the authors' eval/train
    if split not in splits:
        raise InputError(f"MIC has no split {split!r}", field="split",
                         hint=f"use one of {', '.join(splits)}")
    return splits[split]


# ---------------------------------------------------------------- HelpSteer2 and download


def _offline(download: bool | None) -> bool:
    if download is not None:
        return not download
    return os.environ.get("PLURALIGN_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def _helpsteer2_file(split: str, data_dir: str | os.PathLike[str] | None,
                     download: bool | None) -> Path:
    relative = f"helpsteer2/{split}.json"
    found = _find(relative, data_dir)
    if found is not None:
        return found
    looked = ", ".join(str(d / relative) for d in _search_dirs(data_dir)) or "nowhere"
    how = ("pass `data=DIR` or set PLURALIGN_DATA=DIR for a folder holding "
           f"{relative}, or put the files in {_user_dir_text()}/helpsteer2/")
    dest = user_data_dir()
    if f"{split}.json" not in HELPSTEER2_SHA256:
        raise DataNotFoundError(f"helpsteer2 split {split!r} not found (looked in {looked}); "
                                f"{how}")
    if _offline(download) or dest is None:
        raise DataNotFoundError(f"helpsteer2 {split} data not found (looked in {looked}) and "
                                f"downloading is off; {how}")
    try:
        download_helpsteer2(dest / "helpsteer2")
    except DownloadError as e:
        raise DownloadError(f"helpsteer2 {split} data not found (looked in {looked}) and {e}; "
                            f"{how}") from None
    return dest / relative


def _user_dir_text() -> str:
    d = user_data_dir()
    return str(d) if d is not None else "$XDG_DATA_HOME/pluralign"


def download_helpsteer2(
    dest_dir: str | os.PathLike[str],
    *,
    base_url: str | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> list[Path]:
    """Fetch the HelpSteer2 files missing from ``dest_dir``, checking each SHA-256.

    Each file goes to a temporary name in ``dest_dir`` and is renamed only once its checksum
    matches; on any failure nothing is left behind and :class:`DownloadError` says why.
    """
    base = (base_url or os.environ.get("PLURALIGN_HELPSTEER2_URL") or HELPSTEER2_URL).rstrip("/")
    table = dict(HELPSTEER2_SHA256 if checksums is None else checksums)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    done = []
    for fname, expected in table.items():
        target = dest / fname
        if not target.is_file():
            log.info("downloading %s/%s", base, fname)
            fetch_verified(f"{base}/{fname}", target, expected, timeout)
        done.append(target)
    return done


def fetch_verified(url: str, target: Path, sha256: str, timeout: float) -> None:
    """Stream ``url`` into a temporary file beside ``target``; rename only if the hash matches."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                    suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = Hasher()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 16):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256.lower():
            raise DownloadError(f"the download of {url} failed its checksum (expected sha256 "
                                f"{sha256}, got {digest.hexdigest()}); nothing was kept")
        os.replace(tmp, target)
    except DownloadError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DownloadError(f"downloading {url} failed: {_reason(e)}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _reason(e: Exception) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e)


# ---------------------------------------------------------------- published targets

_PUBLISHED = {"sampled": "sampled_{name}", "high": "{name}/target_high.json",
              "low": "{name}/target_low.json"}


def published_locations(
    name: str, which: str, data_dir: str | os.PathLike[str] | None = None
) -> str:
    """Where :func:`published_targets` looks for a set, for error messages."""
    if known_benchmark(name) is None or which not in _PUBLISHED:
        return f"nowhere: {name} has no published target sets"
    relative = "alignment_targets/" + _PUBLISHED[which].format(name=benchmark_family(name))
    return " and ".join(str(d / relative) for d in _search_dirs(data_dir)) or "nowhere"


def published_targets(
    name: str, which: str, data_dir: str | os.PathLike[str] | None = None
) -> TargetSet | None:
    """The published ``sampled`` / ``high`` / ``low`` set of a known benchmark, or None.

    Read from ``<data>/alignment_targets/``; target names keep the file stems as labels.
    """
    known = known_benchmark(name)
    if which not in _PUBLISHED:
        raise InputError(f"no published target set {which!r}", field="targets",
                         hint=f"published sets: {', '.join(_PUBLISHED)}")
    if known is None:
        return None
    base = benchmark_family(name)
    relative = "alignment_targets/" + _PUBLISHED[which].format(name=base)
    for d in _search_dirs(data_dir):
        path = d / relative
        if path.is_file() or (path.is_dir() and any(path.glob("*.json"))):
            return load_target_files([path], known[0], name=which)
    return None
