"""A Hyperas notebook, imports changed, run headless in a real Jupyter kernel (nbclient + ipykernel).

Hyperas needed ``notebook_name=`` and the .ipynb file in the working directory, and still failed on comments,
tabs and helpers; here the model is read from the kernel's cells, ``notebook_name`` is accepted and ignored, and
nothing is written next to the notebook.

The kernel is the native ``python3`` one of the running interpreter (ipykernel, a test dependency), so the test
needs no ``jupyter kernelspec install`` on a fresh machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("keras")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

CELLS = [
    """
import os
os.environ.setdefault("KERAS_BACKEND", "torch")
import json
import numpy as np
import keras
from keras.layers import Activation, Dense, Dropout, Input
from keras.models import Sequential
from hyperbrace.hyperas import optim                                  # was: from hyperas import optim
from hyperbrace.hyperas.distributions import choice, uniform          # was: from hyperas.distributions import ...
from hyperbrace.hyperas import Trials, STATUS_OK, tpe                 # was: from hyperopt import ...
""",
    """
def data():
    from sklearn.datasets import load_digits
    digits = load_digits()
    nb_classes = 10
    x = (digits.data / 16.0).astype("float32")
    y = keras.utils.to_categorical(digits.target, nb_classes)
    return (x[:300], y[:300],
            x[300:400], y[300:400])   # a return over two lines broke Hyperas
""",
    # tab-indented, with braces in a comment and a docstring: each broke Hyperas' text parser
    "def scale(units):\n\treturn units * 2\n\n"
    "def create_model(x_train, y_train, x_test, y_test):\n"
    "\t'''A {{docstring}} with braces.'''\n"
    "\tmodel = Sequential([Input(shape=(64,))])\n"
    "\tmodel.add(Dense(scale({{choice([8, 16])}})))  # {{choice([1, 2])}} in a comment is no parameter\n"
    "\tmodel.add(Activation({{choice(['relu', 'tanh'])}}))\n"
    "\tmodel.add(Dropout({{uniform(0, 0.5)}}))\n"
    "\tmodel.add(Dense(nb_classes, activation='softmax'))\n"
    "\tmodel.compile(loss='categorical_crossentropy', optimizer='adam', metrics=['accuracy'])\n"
    "\tmodel.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)\n"
    "\t_, accuracy = model.evaluate(x_test, y_test, verbose=0)\n"
    "\treturn {'loss': -accuracy, 'status': STATUS_OK, 'model': model}\n",
    """
trials = Trials()
best_run, best_model = optim.minimize(model=create_model, data=data, algo=tpe.suggest, max_evals=2,
                                      trials=trials, notebook_name='not_this_notebook', verbose=False)
x_test = data()[2]
print(json.dumps({"backend": keras.backend.backend(), "best_run": best_run, "trials": len(trials),
                  "predictions": list(best_model.predict(x_test, verbose=0).shape)}))
""",
]


@pytest.mark.timeout(1800)  # upper bound: TensorFlow/JAX kernels take minutes on a 2-core machine loaded 15x over
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])  # Keras' three backends, each in its kernel
def test_a_hyperas_notebook_runs_headless(backend, tmp_path, monkeypatch):
    pytest.importorskip(backend)
    # The kernel is a new process: it finds hyperbrace (this checkout) and the Keras backend through its environment.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("KERAS_BACKEND", backend)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.strip("\n")) for c in CELLS])
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=900, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    outputs = notebook.cells[-1].outputs
    text = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    report = json.loads(text.strip().splitlines()[-1])
    assert report["backend"] == backend
    assert list(report["best_run"]) == ["scale", "Activation", "Dropout"]
    assert report["best_run"]["scale"] in (0, 1) and report["best_run"]["Activation"] in (0, 1)
    assert report["trials"] == 2 and report["predictions"] == [100, 10]
    assert list(tmp_path.iterdir()) == []  # nothing left next to the notebook (Hyperas wrote temp_model.py)
