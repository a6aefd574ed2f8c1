"""In Jupyter (a real kernel run by nbclient): a SearchResult shows as an HTML table, and result.plot_*() return
Plotly figures that display inline."""

from __future__ import annotations

import json

import pytest

from tests.test_notebook import KERNEL, REPO, kernel_path, nbclient, nbformat  # noqa: F401  (the kernel fixture)

CELLS = [
    """
import json
import hyperbrace
from hyperbrace import minimize, uniform, choice

def model():
    lr = {{uniform(0.01, 0.5)}}
    units = {{choice([16, 32])}}
    loss = 1.0
    for epoch in range(5):
        loss *= 0.5 + lr + units / 1000
        hyperbrace.report(loss, epoch)
        if hyperbrace.should_prune():
            raise hyperbrace.Pruned()
    return loss

result = minimize(model, max_evals=10, seed=0, directory=RUN_DIRECTORY, show_progress=False)
""",
    "result",
    "result.plot_history()",
    """
figures = [result.plot_importances(), result.plot_parallel_coordinates(), result.plot_slices(),
           result.plot_learning_curves(), result.plot_timeline()]
print(json.dumps([[type(f).__module__, len(f.data)] for f in figures]))
""",
]


def test_a_result_renders_as_html_and_its_plots_inline(tmp_path, kernel_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_path))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(f"RUN_DIRECTORY = {str(tmp_path / 'runs')!r}")]
    notebook.cells += [nbformat.v4.new_code_cell(source.strip()) for source in CELLS]
    client = nbclient.NotebookClient(notebook, kernel_name=KERNEL, timeout=240,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    shown = notebook.cells[2].outputs[0]["data"]
    html = shown["text/html"]
    assert html.startswith("<p><b>model</b>: 10 trials (") and "<table>" in html and "<th>lr</th>" in html
    assert shown["text/plain"].startswith("SearchResult(best_loss=")
    plot = notebook.cells[3].outputs[0]["data"]
    # Plotly's notebook renderer: the figure's JSON for JupyterLab, or its HTML for the classic notebook.
    assert "application/vnd.plotly.v1+json" in plot or "text/html" in plot
    if "application/vnd.plotly.v1+json" in plot:
        assert plot["application/vnd.plotly.v1+json"]["data"]
    printed = "".join(o.get("text", "") for o in notebook.cells[4].outputs if o.output_type == "stream")
    figures = json.loads(printed.strip().splitlines()[-1])
    assert all(module.startswith("plotly.graph_objs") and traces > 0 for module, traces in figures)
