"""The public facade: docs/api.md's walk-through runs as written (an LLM sweep against the
local fake server from inside a running event loop included), and ``import pluralign`` stays
light."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fake_openai import make_fake_server

__all__ = ["make_fake_server"]
DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_api_walkthrough_runs(shared_data: Path, tmp_path: Path, make_fake_server: Any,
                              monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    pytest.importorskip("aiohttp")
    pytest.importorskip("matplotlib")
    from pluralign.jobs.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PLURALIGN_DATA", str(shared_data))
    server = make_fake_server(require_auth=False)
    assert main(["sweep", "--benchmark", "helpsteer2", "--scorer", "ridge", "--targets", "high",
                 "--cache", "cache", "--out", "runs/hs2-ridge"]) == 0
    blocks = _blocks()
    assert len(blocks) >= 6
    code = "\n".join(blocks).replace("http://127.0.0.1:8089/v1", f"{server.url}")
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # the doc's own asserts check figures

    scores, per_target = namespace["llm_scores"], namespace["llm_targets"]
    assert scores.report.completed + scores.report.cached == scores.report.items > 0
    assert scores.predictions.shape == (40, 5)
    assert set(per_target["set"]) == {"sampled"} and len(per_target) == 50
    per_group = namespace["per_group"]
    assert list(per_group["group"]) == ["thorough", "concise", "ALL"]
    assert (per_group["welfare_ainf"] <= per_group["welfare_a0"] + 1e-12).all()
    assert (tmp_path / "report.html").stat().st_size > 10_000
    # a second LLM run sends nothing: the cache answers every item
    import asyncio

    import pluralign

    async def again() -> Any:
        loop = asyncio.get_running_loop()
        assert loop.is_running()
        return await pluralign.ascore_llm(namespace["small"], "comparative-regression",
                                          namespace["config"], cache="cache", quiet=True)

    second = asyncio.run(again())
    assert second.report.requests == 0 and second.report.cached == second.report.items
    assert (second.predictions == scores.predictions).all()


def test_import_is_light_and_lazy() -> None:
    code = ("import sys, pluralign; heavy = [m for m in ('numpy', 'pyarrow', 'pandas', 'ray', "
            "'aiohttp', 'pluralign.api') if m in sys.modules]; print(heavy); "
            "print(pluralign.LLMConfig.__name__, 'pluralign.api' in sys.modules); "
            "print(sorted(set(pluralign.__all__) - set(dir(pluralign))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["[]", "LLMConfig False", "[]"]


def test_unknown_attribute_is_an_attribute_error() -> None:
    import pluralign

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pluralign.nope  # noqa: B018
