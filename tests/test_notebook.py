"""``examples/quickstart.ipynb`` executed end to end by nbclient on a real ipykernel.

Asserts every cell ran without error, the front cell returned the front's table (and the plotly
figure), and the export cell wrote a TFLite Micro bundle whose zip holds the model as C source.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def _text(output: dict[str, Any]) -> str:
    if output["output_type"] == "stream":
        return str(output["text"])
    data = output.get("data", {})
    return str(data.get("text/plain", ""))


def _cell(nb: Any, source_start: str) -> Any:
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(source_start))


@pytest.mark.slow
def test_quickstart_notebook_runs_in_a_real_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's scratch folder (tempfile.mkdtemp) lands here
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        assert cell.cell_type != "code" or not cell.outputs, "commit the notebook without outputs"
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=600, startup_timeout=120, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError naming the cell on the first error

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o["output_type"] == "error"]
    assert errors == []
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")

    summary = "".join(_text(o) for o in _cell(nb, "summary = %tinyfront search").outputs)
    match = re.search(r"study quickstart \(finished\): 3 trials, (\d+) complete, 0 failed, (\d+) feasible", summary)
    assert match and int(match.group(1)) == 3 and int(match.group(2)) >= 1

    front_outputs = _cell(nb, "front = %tinyfront front").outputs
    table = next(o for o in front_outputs if o["output_type"] == "execute_result")
    html = table["data"]["text/html"]
    for column in ("accuracy", "latency_ms", "flash_kb", "sram_kb", "accuracy_kind", "knee"):
        assert f"<th>{column}</th>" in html
    assert "measured" in html and "estimated" in html
    plots = [o for o in front_outputs if o["output_type"] == "display_data"]
    assert plots and "application/vnd.plotly.v1+json" in plots[0]["data"]
    figure = plots[0]["data"]["application/vnd.plotly.v1+json"]
    assert "feasible" in {t.get("name") for t in figure["data"]}

    shown = "".join(_text(o) for o in _cell(nb, "knee = ").outputs)
    assert "CandidateResult: tinyfront_family_small_cnn:build" in shown and "feasible:" in shown

    export = "".join(_text(o) for o in _cell(nb, "bundle = %tinyfront export").outputs)
    written = re.search(r"wrote (\S+\.zip) \(tflm, tensor arena ([\d,]+) bytes\)", export)
    assert written, export
    zip_path = Path(written.group(1))
    assert zip_path.is_file() and tmp_path in zip_path.parents
    with zipfile.ZipFile(zip_path) as z:
        names = {n.split("/", 1)[-1] for n in z.namelist()}
    assert {"model_data.cc", "model_settings.h", "model_op_resolver.h", "main.cc"} <= names
    assert int(written.group(2).replace(",", "")) > 0
