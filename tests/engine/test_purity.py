"""engine/ and schemas/ stay pure: importing all of them loads no ray, vllm, redis or aiohttp."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_engine_imports_no_distributed_stack() -> None:
    modules = sorted(
        ".".join(("pluralign", *p.relative_to(ROOT).with_suffix("").parts))
        for pkg in ("engine", "schemas")
        for p in (ROOT / pkg).rglob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in ('ray', 'vllm', 'redis', 'aiohttp') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert len(modules) > 20
    assert out == ""
