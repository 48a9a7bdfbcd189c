"""Shared fixtures: where the published data lives (skip cleanly without it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the property tests derandomized: a red CI must be reproducible, not a coin toss.
# Locally they explore new examples on every run.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

_REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path | None:
    """The shared data folder: $PLURALIGN_DATA, else ../shared/data beside the checkout."""
    env = os.environ.get("PLURALIGN_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(_REPO.parent / "shared" / "data")
    for c in candidates:
        if (c / "helpsteer2" / "eval.json").exists():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = data_root()
    if root is None:
        pytest.skip("published data not found (set PLURALIGN_DATA)")
    return root
