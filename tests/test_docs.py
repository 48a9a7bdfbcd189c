"""docs/api.md runs as written in a real Jupyter kernel: its Python blocks become the cells of
a notebook (nbformat) that nbclient executes in a ``python3`` IPython kernel (ipykernel), in a
temporary folder, with a timeout; any cell error fails the test. This is what a researcher
pasting the page into Jupyter gets, top-level ``await`` included (a plain ``exec`` cannot run
those cells, and ``asyncio.run`` inside them fails in a kernel)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
API_DOC = DOCS / "api.md"
CELL_TIMEOUT_S = 300
"""Most seconds one cell may take (the slowest, a ridge sweep in a subprocess, takes ~10 s)."""


def python_blocks(doc: Path) -> list[str]:
    """The ```python blocks of a Markdown file, in order."""
    return re.findall(r"^```python\n(.*?)^```", doc.read_text(), flags=re.DOTALL | re.MULTILINE)


def _jupyter_sandbox(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every file Jupyter and IPython write under ``tmp``, and make ``python3`` this
    interpreter's kernel (a ``python3`` kernelspec installed elsewhere on the machine could
    start another Python, without pluralign)."""
    spec = tmp / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (pluralign tests)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp / "jupyter"))
    for var, sub in (("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_DATA_DIR", "data"),
                     ("JUPYTER_CONFIG_DIR", "config"), ("IPYTHONDIR", "ipython"),
                     ("MPLCONFIGDIR", "matplotlib")):
        monkeypatch.setenv(var, str(tmp / sub))


def _cell_outputs(cell: Any) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            parts.append(str(out.get("data", {}).get("text/plain", "")))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
    return "".join(parts)


@pytest.mark.slow
def test_api_md_runs_as_a_notebook(shared_data: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip(
        "nbformat", reason="nbformat not installed (pip install nbformat nbclient ipykernel)")
    nbclient = pytest.importorskip(
        "nbclient", reason="nbclient not installed (pip install nbformat nbclient ipykernel)")
    pytest.importorskip(
        "ipykernel", reason="ipykernel not installed (pip install nbformat nbclient ipykernel)")
    pytest.importorskip("aiohttp", reason="the fake server needs aiohttp (pluralign[distributed])")
    pytest.importorskip("matplotlib", reason="write_report needs matplotlib (pluralign[report])")
    from nbclient.exceptions import CellExecutionError

    blocks = python_blocks(API_DOC)
    assert len(blocks) >= 8, "docs/api.md lost its walk-through"
    assert any(re.search(r"^\S.*\bawait\b", b, flags=re.MULTILINE) for b in blocks), \
        "the walk-through should await at the top level of a cell, as a notebook does"
    work = tmp_path / "work"
    work.mkdir()
    _jupyter_sandbox(tmp_path, monkeypatch)
    monkeypatch.setenv("PLURALIGN_DATA", str(shared_data))
    monkeypatch.setenv("PLURALIGN_OFFLINE", "1")
    monkeypatch.setenv("PLURALIGN_PROGRESS", "0")
    monkeypatch.delenv("PLURALIGN_CACHE", raising=False)

    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(b) for b in blocks],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}})
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(work)}},
                                     allow_errors=False)
    try:
        client.execute()
    except CellExecutionError as e:
        pytest.fail(f"a cell of docs/api.md failed in the kernel:\n{e}", pytrace=False)
    finally:
        nbformat.write(nb, str(tmp_path / "api.ipynb"))  # the executed notebook, to look at

    outputs = [_cell_outputs(c) for c in nb.cells]
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c["outputs"])
    text = "\n".join(outputs)
    assert "comparative-regression" in text and "ridge" in text
    assert "sampled" in text and "high" in text               # the sweep's table was printed
    assert (work / "report.html").stat().st_size > 10_000
    assert (work / "runs" / "hs2-ridge" / "summary.json").exists()
    assert (work / "cache").is_dir()
