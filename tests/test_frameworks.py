"""Tiny Keras (PyTorch backend) and PyTorch searches end to end: the best model is saved in the run directory,
loads again from disk in a process that never held it, and predicts exactly as the trial that made it measured.

Each step runs ``tests/helpers/framework_search.py`` in a process of its own, so Keras and PyTorch never enter the
pytest process: once imported, their integrations act on every trial of every later test (Keras clears its
session after each trial), and a process that has trained with PyTorch cannot safely fork.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HELPERS = Path(__file__).parent / "helpers"
REPO = Path(__file__).parent.parent


def run_step(step: str, framework: str, path: Path) -> dict:
    pytest.importorskip(framework)
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(HELPERS / "framework_search.py"), step, framework, str(path)],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    return json.loads(line.removeprefix("REPORT "))


def test_keras_search_end_to_end(tmp_path):
    found = run_step("search", "keras", tmp_path)
    assert [t["state"] for t in found["trials"]] == ["COMPLETE"] * 3
    best_run = found["best_run"]
    assert set(best_run) == {"Dense", "Dropout", "optimizer", "batch_size"}
    assert best_run["Dense"] in (16, 32) and 0 <= best_run["Dropout"] <= 0.5
    assert best_run["optimizer"] in ("adam", "rmsprop") and best_run["batch_size"] in (32, 64)
    assert found["models"] == [f"trial-{found['best_number']:05d}.keras"]  # keep_models=1: only the best
    assert found["owners"] == [f"trial-{found['best_number']:05d}.owner.json"]  # each kept model names its trial

    reloaded = run_step("reload", "keras", Path(found["directory"]))
    assert reloaded["backend"] == "torch" and reloaded["is_model"]
    assert reloaded["units"] == best_run["Dense"] and reloaded["rate"] == pytest.approx(best_run["Dropout"])
    assert reloaded["predict_shape"] == [5, 10]
    # The reloaded model scores what its trial reported (loss = -validation accuracy).
    assert reloaded["score"] == pytest.approx(found["best_loss"], abs=1e-6)


def test_pytorch_search_end_to_end(tmp_path):
    found = run_step("search", "torch", tmp_path)
    assert [t["state"] for t in found["trials"]] == ["COMPLETE"] * 4
    best_run = found["best_run"]
    assert set(best_run) == {"hidden", "activation", "lr"}
    assert best_run["activation"] in ("nn.ReLU()", "nn.Tanh()")  # a layer object is reported by its source text
    ranked = sorted(found["trials"], key=lambda t: t["loss"])
    assert found["models"] == sorted(f"trial-{t['number']:05d}.pt" for t in ranked[:2])  # keep_models=2
    assert found["owners"] == sorted(f"trial-{t['number']:05d}.owner.json" for t in ranked[:2])

    reloaded = run_step("reload", "torch", Path(found["directory"]))
    assert reloaded["is_model"] and reloaded["hidden"] == best_run["hidden"]
    assert reloaded["activation"] == {"nn.ReLU()": "ReLU", "nn.Tanh()": "Tanh"}[best_run["activation"]]
    assert reloaded["predict_shape"] == [5, 10]
    assert reloaded["score"] == pytest.approx(found["best_loss"], rel=1e-5)
    runner_up = reloaded["runner_up"]
    assert runner_up["number"] == ranked[1]["number"]
    assert runner_up["score"] == pytest.approx(runner_up["loss"], rel=1e-5)
