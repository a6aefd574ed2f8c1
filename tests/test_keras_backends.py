"""The Keras integration on each of Keras' three backends (TensorFlow, JAX, PyTorch), each in a process of its own
with ``KERAS_BACKEND`` set (Keras picks its backend once, when first imported).

Per backend, ``tests/helpers/keras_backend_check.py`` runs a search that prunes (a frozen configuration is stopped
after its first epoch while the user's callback keeps running), a search with ``n_jobs=2`` (workers inherit the
backend), and the Hyperas layer; then a second process reloads the best model and scores what its trial measured.
The notebook test (tests/test_hyperas_notebook.py) is parametrized over the same backends.

Cost: about 25 s of CPU per backend (TensorFlow's import alone is about 10 s of CPU in each of the 4 processes);
on the shared 2-core machine, under a load average near 19, the TensorFlow run took minutes of wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent / "helpers" / "keras_backend_check.py"
REPO = Path(__file__).parent.parent
BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}  # backend -> the package it needs


def run_step(step: str, backend: str, path: Path) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(SCRIPT), step, str(path)], env=env, capture_output=True, text=True,
                          timeout=1500)  # an upper bound for a machine loaded many times over
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    return json.loads(line.removeprefix("REPORT "))


@pytest.mark.timeout(3000)  # upper bound: minutes on a 2-core machine under a load average of 30
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_keras_search_prunes_runs_in_workers_and_reloads(backend, tmp_path):
    pytest.importorskip(BACKENDS[backend])
    found = run_step("search", backend, tmp_path)
    assert found["backend"] == backend

    pruned = found["pruned"]
    assert pruned["states"] == ["COMPLETE", "PRUNED"]
    assert pruned["steps"] == [[1, 2, 3], [1]]  # steps are epochs, counted from 1
    assert pruned["epochs_seen"] == [3, 1]  # the user's callback ran on every epoch
    # TensorFlow and JAX leak across trials in one process: a one-process search runs them in a recycled worker.
    assert pruned["in_worker"] == [backend in ("tensorflow", "jax")] * 2
    assert len(pruned["models"]) == 1 and pruned["models"][0].endswith(".keras")

    parallel = found["parallel"]
    assert parallel["states"] == ["COMPLETE", "COMPLETE"] and parallel["model_is_keras"]
    assert parallel["in_workers"]  # the trials ran in worker processes, which inherited the backend

    hyperas = found["hyperas"]
    assert hyperas == {"trials": 1, "best_run": ["Dense", "Dropout", "batch_size", "optimizer"],
                       "predict_shape": [5, 10]}

    reloaded = run_step("reload", backend, Path(pruned["directory"]))
    assert reloaded["backend"] == backend and reloaded["is_model"] and reloaded["predictions_finite"]
    assert reloaded["score"] == pytest.approx(pruned["best_loss"], abs=1e-6)
