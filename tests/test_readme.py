"""The README's template example runs as written, and behaves as the README says."""

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _template_example() -> str:
    text = README.read_text()
    after = text.split("Templates are sampled when they run (define-by-run):", 1)[1]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


@pytest.mark.slow
def test_the_readme_template_example_runs_and_samples_conditionally(tmp_path):
    source = _template_example()
    assert source.rstrip().endswith("..."), "the example's elision marker moved; update this test"
    # The README elides training; complete the function so that it returns a loss.
    body = source.rstrip()[: -len("...")] + "model.compile(loss='mse')\n    return float(len(model.layers))\n"
    module_file = tmp_path / "readme_example.py"
    module_file.write_text(
        "import keras\nfrom keras import layers\nfrom hyperbrace import choice, randint, uniform\n\n"
        + textwrap.dedent(body)
    )
    namespace = {"__name__": "readme_example", "__file__": str(module_file)}
    exec(compile(module_file.read_text(), str(module_file), "exec"), namespace)

    from hyperbrace import minimize

    def data():
        return np.zeros((4, 64)), np.zeros(4)

    result = minimize(
        namespace["create_model"], data, max_evals=8, seed=3, algo="random", prune=None,
        directory=tmp_path / "runs", show_progress=False,
    )
    trials = [t for t in result.trials if t.state == "COMPLETE"]
    assert len(trials) == 8
    for trial in trials:
        params = trial.params
        # One units_i per hidden layer, as many as range({{randint(1, 4, name="n_layers")}}) gave.
        assert sorted(k for k in params if k.startswith("units_")) == [f"units_{i}" for i in range(params["n_layers"])]
        assert 1 <= params["n_layers"] <= 3
        # The dropout rate exists only where the branch that holds it ran.
        assert ("Dropout" in params) == (params["regularization"] == "regularized")
        assert params["add"] in ("layers.BatchNormalization()", "layers.LayerNormalization()")
    assert {t.params["regularization"] for t in trials} == {"plain", "regularized"}
