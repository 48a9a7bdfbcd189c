"""pluralign: an async, distributed evaluation engine for pluralistic alignment.

The repository keeps the design's folders (``engine/``, ``actors/``, ``jobs/``, ``schemas/``);
they install as ``pluralign.engine``, ``pluralign.actors``, ``pluralign.jobs`` and
``pluralign.schemas``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pluralign")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
