"""The installed version of pluralign (recorded in manifests, reports and ``--version``)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pluralign")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
