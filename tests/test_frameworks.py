"""Tiny Keras (PyTorch backend) and PyTorch searches end to end: the best model is saved in the run directory,
loads again from disk, and predicts exactly as the trial that made it measured.

The model functions live in ``tests/helpers`` and are imported inside the tests, so collecting the suite does
not import Keras or PyTorch (the core uses a framework's integration only once it is imported).
"""

from __future__ import annotations

import pytest

from hyperbrace import minimize

pytestmark = [
    pytest.mark.slow,
    # Keras' PyTorch backend converts tensors the NumPy 1 way; the warning is Keras', not ours.
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]


def test_keras_search_end_to_end(tmp_path):
    pytest.importorskip("keras")
    from helpers import keras_models

    import keras

    assert keras.backend.backend() == "torch"
    result = minimize(keras_models.create_model, keras_models.data, max_evals=3, seed=0, directory=tmp_path,
                      show_progress=False, keep_models=1)
    assert [t.state for t in result.trials] == ["COMPLETE"] * 3
    assert set(result.best_run) == {"Dense", "Dropout", "optimizer", "batch_size"}
    assert result.best_run["optimizer"] in ("adam", "rmsprop") and 0 <= result.best_run["Dropout"] <= 0.5

    saved = list((result.directory / "models").iterdir())
    assert [p.name for p in saved] == [f"trial-{result.best_trial.number:05d}.keras"]
    best_run, best_model = result  # loaded from the .keras file, not kept in memory
    assert isinstance(best_model, keras.Model)
    assert best_model.layers[0].units == best_run["Dense"]
    assert best_model.layers[1].rate == pytest.approx(best_run["Dropout"])
    _, _, x_val, y_val = keras_models.data()
    assert best_model.predict(x_val[:5], verbose=0).shape == (5, 10)
    # The reloaded model scores what its trial reported (loss = -validation accuracy).
    assert keras_models.accuracy(best_model, x_val, y_val) == pytest.approx(-result.best_loss, abs=1e-6)


def test_pytorch_search_end_to_end(tmp_path):
    torch = pytest.importorskip("torch")
    from helpers import torch_models

    result = minimize(torch_models.create_model, torch_models.data, max_evals=4, seed=0, directory=tmp_path,
                      show_progress=False, keep_models=2)
    assert [t.state for t in result.trials] == ["COMPLETE"] * 4
    assert set(result.best_run) == {"hidden", "activation", "lr"}
    assert result.best_run["activation"] in ("nn.ReLU()", "nn.Tanh()")  # a layer object: its source text

    files = sorted(p.name for p in (result.directory / "models").iterdir())
    ranked = sorted(result.trials, key=lambda t: t.loss)
    assert files == sorted(f"trial-{t.number:05d}.pt" for t in ranked[:2])
    best_model = result.best_model
    assert isinstance(best_model, torch.nn.Module)
    assert best_model[0].out_features == result.best_run["hidden"]
    expected_activation = torch.nn.ReLU if result.best_run["activation"] == "nn.ReLU()" else torch.nn.Tanh
    assert isinstance(best_model[1], expected_activation)
    _, _, x_val, y_val = torch_models.data()
    assert best_model(x_val[:5]).shape == (5, 10)
    assert torch_models.validation_loss(best_model, x_val, y_val) == pytest.approx(result.best_loss, rel=1e-5)
    runner_up = result.load_model(ranked[1].number)
    assert torch_models.validation_loss(runner_up, x_val, y_val) == pytest.approx(ranked[1].loss, rel=1e-5)
