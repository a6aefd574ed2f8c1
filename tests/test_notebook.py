"""A Jupyter notebook, run headless (nbclient + ipykernel): templates in a cell work with no ``notebook_name``.

The kernel is this virtual environment's Python, registered in a temporary Jupyter path by the test itself, so
the test needs no kernel installed on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).parent.parent
KERNEL = "hyperbrace-test"

CELLS = [
    # A helper and a global in their own cells: the rewritten model must still see them.
    """
import json
import math
from hyperbrace import minimize, STATUS_OK

OFFSET = 0.25

def penalty(units):
    return units / 1000
""",
    """
def data():
    return [0.1, 0.2, 0.3], 2.0
""",
    """
def create_model(values, scale):
    # a comment with {{braces}} is no template
    rate = {{uniform(0, 1)}}
    units = {{choice([16, 32, 64])}}
    if {{choice(["deep", "shallow"], name="shape")}} == "deep":
        depth = {{uniformint(2, 4)}}
    loss = abs(rate - OFFSET) * scale + penalty(units) + math.fsum(values) * 0
    return {"loss": loss, "status": STATUS_OK, "model": {"rate": rate, "units": units}}
""",
    """
result = minimize(create_model, data, max_evals=8, seed=0, directory=RUN_DIRECTORY)
best_run, best_model = result
""",
    # The same name redefined in a later cell (as when a cell is edited and run again): the new source counts.
    """
def create_model(values, scale):
    return {{uniform(10, 11)}} * scale
""",
    """
again = minimize(create_model, data, max_evals=3, seed=0, directory=RUN_DIRECTORY, study_name="edited",
                 show_progress=False)
print(json.dumps({
    "best_run": best_run, "best_model": best_model, "best_loss": result.best_loss,
    "states": [t.state for t in result.trials], "study": result.study.study_name,
    "directory": str(result.directory), "edited_run": again.best_run, "edited_loss": again.best_loss,
}))
""",
]


@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory) -> Path:
    """Register this Python as a Jupyter kernel under a temporary prefix; return the Jupyter path holding it."""
    prefix = tmp_path_factory.mktemp("jupyter")
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", KERNEL],
        check=True, capture_output=True,
    )
    return prefix / "share" / "jupyter"


def test_notebook_search_without_notebook_name(tmp_path, kernel_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_path))
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the kernel imports hyperbrace from this checkout
    run_directory = tmp_path / "runs"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(f"RUN_DIRECTORY = {str(run_directory)!r}")]
    notebook.cells += [nbformat.v4.new_code_cell(source.strip()) for source in CELLS]
    client = nbclient.NotebookClient(
        notebook, kernel_name=KERNEL, timeout=240, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    outputs = notebook.cells[-1].outputs
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stdout")
    report = json.loads(printed.strip().splitlines()[-1])
    assert report["states"] == ["COMPLETE"] * 8
    best_run = report["best_run"]
    assert {"rate", "units", "shape"} <= set(best_run) <= {"rate", "units", "shape", "depth"}
    assert ("depth" in best_run) == (best_run["shape"] == "deep")
    assert report["best_model"] == {"rate": best_run["rate"], "units": best_run["units"]}
    expected = abs(best_run["rate"] - 0.25) * 2.0 + best_run["units"] / 1000
    assert report["best_loss"] == pytest.approx(expected)
    # In a notebook the study is named after the function (cell file names change each session).
    assert report["study"] == "create_model"
    assert Path(report["directory"]) == run_directory / "create_model"
    assert (run_directory / "create_model" / "study.journal").is_file()
    # The redefined function was compiled from its new cell.
    assert list(report["edited_run"]) == ["uniform"] and 20 <= report["edited_loss"] <= 22

    # The search cell showed the summary table after the progress bar.
    search_outputs = notebook.cells[4].outputs
    shown = "".join(o.get("text", "") for o in search_outputs if o.output_type == "stream")
    assert "Study 'create_model': 8 trials (8 complete)" in shown
    # The progress bar is tqdm's widget (ipywidgets: the `notebook` extra) or the text bar, never tqdm's warning.
    everything = json.dumps([output for cell in notebook.cells for output in cell.get("outputs", [])])
    assert "IProgress not found" not in everything
