"""TensorBoard and MLflow logging, read back with their own readers: TensorBoard's EventAccumulator on the event
files each trial wrote, and MlflowClient on a real local MLflow file store."""

from __future__ import annotations

import os

import pytest
from optuna.trial import TrialState

import hyperbrace
from hyperbrace import choice, maximize, minimize, uniform  # noqa: F401  (the templates name them)

# End-to-end (PyTorch, MLflow and TensorBoard imported, real searches): in `make test`, not in the unit run.
pytestmark = pytest.mark.slow

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _events(directory):
    accumulator = event_accumulator.EventAccumulator(str(directory), size_guidance={"scalars": 0})
    accumulator.Reload()
    return accumulator


def torch_style():
    lr = {{uniform(0.1, 0.9)}}
    width = {{choice([8, 16])}}
    writer = hyperbrace.summary_writer()  # PyTorch code logs what it likes to the trial's writer
    loss = 1.0
    for epoch in range(3):
        loss *= lr
        writer.add_scalar("train/grad_norm", width * loss, epoch)
        hyperbrace.report(loss, epoch)
    return loss


def test_tensorboard_event_files_per_trial_with_the_hparams_table(tmp_path):
    result = minimize(torch_style, max_evals=3, seed=0, directory=tmp_path, show_progress=False, prune=None,
                      tensorboard=True)
    root = result.directory / "tensorboard"
    assert sorted(p.name for p in root.iterdir()) == ["trial-00000", "trial-00001", "trial-00002"]
    for trial in result.study.trials:
        events = _events(root / f"trial-{trial.number:05d}")
        tags = events.Tags()
        assert {"train/grad_norm", "reported/loss"} <= set(tags["scalars"])
        reported = [(e.step, e.value) for e in events.Scalars("reported/loss")]
        assert reported == [(s, pytest.approx(v)) for s, v in sorted(trial.intermediate_values.items())]
        # TensorBoard's HPARAMS plugin: the session's hyperparameters and its final value.
        plugin = events.PluginTagToContent("hparams")
        assert "_hparams_/session_start_info" in plugin
        from tensorboard.plugins.hparams import plugin_data_pb2

        start = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/session_start_info"])
        hparams = start.session_start_info.hparams
        assert hparams["lr"].number_value == pytest.approx(trial.params["lr"])
        assert hparams["width"].number_value == trial.params["width"]
        assert [e.value for e in events.Scalars("hparam/loss")] == [pytest.approx(trial.value)]
    assert hyperbrace.summary_writer() is None  # outside a trial


@pytest.mark.slow
def test_keras_epochs_go_to_tensorboard(tmp_path):
    from tests.helpers import keras_models

    result = minimize(keras_models.create_model, keras_models.data, max_evals=2, seed=0, directory=tmp_path,
                      show_progress=False, tensorboard=True, keep_models=0)
    for trial in result.study.trials:
        events = _events(result.directory / "tensorboard" / f"trial-{trial.number:05d}")
        scalars = set(events.Tags()["scalars"])
        assert {"epoch/loss", "epoch/val_loss", "epoch/val_accuracy", "reported/loss"} <= scalars
        assert [e.step for e in events.Scalars("epoch/val_accuracy")] == [0, 1]
        accuracy = events.Scalars("epoch/val_accuracy")[-1].value
        assert -trial.value == pytest.approx(accuracy, abs=1e-6)


def mixed():
    x = {{uniform(0, 1)}}
    if x > 0.8:
        raise RuntimeError("x too large")
    for step in range(4):
        hyperbrace.report(x * step, step)  # maximized: higher is better
        if hyperbrace.should_prune():
            raise hyperbrace.Pruned()
    return {"accuracy": x}


def test_mlflow_runs_nested_under_the_search_in_a_file_store(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store in maintenance mode
    store = tmp_path / "mlruns"
    seeds = [{"x": 0.9}, {"x": 0.5}, {"x": 0.6}]
    result = maximize(mixed, max_evals=7, seed=1, metric="accuracy", directory=tmp_path, show_progress=False,
                      mlflow=str(store), enqueue=seeds)
    client = MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name(result.study.study_name)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {int(r.data.tags["hyperbrace.trial"]): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert len(parents) == 1 and len(children) == 7
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_accuracy"] == pytest.approx(result.best_value)
    status = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}
    for trial in result.study.trials:
        run = children[trial.number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == status[trial.state] and run.data.tags["hyperbrace.state"] == trial.state.name
        assert float(run.data.params["x"]) == pytest.approx(trial.params["x"])
        if trial.state == TrialState.COMPLETE:
            assert run.data.metrics["accuracy"] == pytest.approx(trial.params["x"])
        history = client.get_metric_history(run.info.run_id, "reported_accuracy")
        assert [(m.step, m.value) for m in history] == [
            (s, pytest.approx(-v)) for s, v in sorted(trial.intermediate_values.items())]
    assert "x too large" in children[0].data.tags["hyperbrace.error"]
    assert children[0].info.status == "FAILED"
