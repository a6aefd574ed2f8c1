"""The examples: the Gala stand-in writer, the article's CNN (a 2-trial search at toy size), the PyTorch MLP."""

from __future__ import annotations

import csv
import doctest
import hashlib
import importlib
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ARTICLE_PARAMETERS = {"Dropout", "Dense", "optimizer", "batch_size"}


@pytest.fixture
def examples(monkeypatch):
    """Import an example module by name (they import each other as plain modules, as when run from examples/)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_standin_has_the_challenge_layout_and_is_deterministic(tmp_path, examples):
    standin = examples("make_gala_standin")
    assert standin.main(["--out", str(tmp_path / "a"), "--n-images", "20"]) == 0
    with open(tmp_path / "a" / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["Image", "Class"]
    assert len(rows) == 20
    assert {row["Class"] for row in rows} == {"Attire", "Decorationandsignage", "Food", "misc"}
    from PIL import Image

    with Image.open(tmp_path / "a" / "Train Images" / rows[0]["Image"]) as image:
        assert (image.size, image.mode) == ((48, 48), "L")

    standin.write_standin(tmp_path / "b", n_images=20)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")  # same seed, same files
    assert standin.write_standin(tmp_path / "a", n_images=20) is False  # idempotent: nothing rewritten


def test_standin_refuses_to_overwrite_a_data_set_it_did_not_write(tmp_path, examples):
    standin = examples("make_gala_standin")
    (tmp_path / "train.csv").write_text("Image,Class\nimage7.jpg,Food\n")
    with pytest.raises(FileExistsError, match="real Gala data set"):
        standin.write_standin(tmp_path, n_images=8)
    assert standin.write_standin(tmp_path, n_images=8, force=True) is True


def test_example_docstrings_run(examples):
    for name in ("make_gala_standin", "gala_cnn"):
        failures, tried = doctest.testmod(examples(name))
        assert tried > 0 and failures == 0, name


@pytest.mark.slow
def test_gala_cnn_search_names_the_articles_parameters_and_reloads_the_best_model(tmp_path, examples, monkeypatch):
    examples("make_gala_standin").write_standin(tmp_path / "gala", n_images=48)
    gala_cnn = examples("gala_cnn")
    # Toy sizes: plain module variables, as --quick sets them.
    monkeypatch.setattr(gala_cnn, "FILTERS", 2)
    monkeypatch.setattr(gala_cnn, "EPOCHS", 1)
    monkeypatch.setattr(gala_cnn, "BN_MOMENTUM", 0.9)
    from hyperbrace import minimize

    result = minimize(
        gala_cnn.create_model, gala_cnn.data, max_evals=2, data_args={"directory": tmp_path / "gala"},
        directory=tmp_path / "runs", seed=0, show_progress=False,
    )
    best_run, best_model = result
    assert set(best_run) == ARTICLE_PARAMETERS
    assert 0 <= best_run["Dropout"] < 1
    assert best_run["Dense"] in (256, 512, 1024)
    assert best_run["optimizer"] in ("rmsprop", "adam", "sgd")
    assert best_run["batch_size"] in (64, 128)
    assert -1 <= result.best_loss <= 0  # the negative validation accuracy

    _, _, x_val, y_val = gala_cnn.data(tmp_path / "gala")
    probabilities = best_model.predict(x_val, verbose=0)
    assert probabilities.shape == (len(x_val), 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    # The reloaded model is the best epoch's: its accuracy is the trial's loss.
    accuracy = float(np.mean(probabilities.argmax(axis=1) == y_val.argmax(axis=1)))
    assert accuracy == pytest.approx(-result.best_loss, abs=1e-6)


@pytest.mark.slow
def test_torch_mlp_example(tmp_path, examples, capsys):
    torch_mlp = examples("torch_mlp")
    assert torch_mlp.main(["--max-evals", "3", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "best_run = {'hidden': " in out
    assert "optimizer_class" in out and "lr" in out
    assert "validation accuracy" in out
