"""``pluralign view``: a local web application over run folders (per-scenario drill-down,
target sliders re-aligned from the cache, two runs side by side).

The page is plain ES modules and one stylesheet under ``static/``, shipped in the package: no
build step, no CDN, nothing fetched from the network. :func:`static_files` is also what
``pluralign serve`` answers ``GET /`` with.
"""

from __future__ import annotations

import mimetypes
from functools import cache
from importlib import resources

_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
          ".svg": "image/svg+xml"}


@cache
def static_files() -> dict[str, tuple[bytes, str]]:
    """{URL path: (content, content type)} of every file the page needs, read from the
    package; ``/`` is the page itself."""
    root = resources.files(__name__) / "static"
    out: dict[str, tuple[bytes, str]] = {}
    for f in root.iterdir():
        if f.is_file() and not f.name.startswith("."):
            ext = f.name[f.name.rfind("."):]
            kind = _TYPES.get(ext) or mimetypes.guess_type(f.name)[0] or "application/octet-stream"
            out[f"/static/{f.name}"] = (f.read_bytes(), f"{kind}; charset=utf-8")
    out["/"] = out["/static/index.html"]
    return out
