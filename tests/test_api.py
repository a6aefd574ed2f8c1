"""The library API a user expects: maximize(), more=, enqueue= (known configurations first), callbacks=,
trials_dataframe() and the best configuration's export."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

import hyperbrace
from hyperbrace import choice, maximize, minimize, uniform  # noqa: F401  (the templates name them)


def scored():
    x = {{uniform(0, 1)}}
    units = {{choice([16, 32, 64])}}
    for step in range(3):
        hyperbrace.report(x * (step + 1) / 3, step)  # higher is better, as the metric is
    return {"accuracy": x + units / 1000, "tag": "t"}


def test_maximize_shows_the_metric_as_returned_and_stores_it_negated(tmp_path, capsys):
    result = maximize(scored, max_evals=8, seed=0, metric="accuracy", directory=tmp_path, show_progress=True,
                      prune=None)
    values = [t.user_attrs["hb.values"]["x"] + t.user_attrs["hb.values"]["units"] / 1000
              for t in result.study.trials]
    assert result.best_value == pytest.approx(max(values))
    assert result.best_loss == pytest.approx(-max(values))  # what the Optuna study stores
    out = capsys.readouterr().out
    assert "trial  accuracy" in out and f"{max(values):.4g}" in out and f"-{max(values):.4g}" not in out
    # Intermediate values are reported negated too, so the study's pruners compare them the right way round.
    first = result.study.trials[0]
    assert first.intermediate_values[2] == pytest.approx(-first.user_attrs["hb.values"]["x"])
    assert result.trials_dataframe()["accuracy"].max() == pytest.approx(max(values))
    assert json.loads(result.export_best("json"))["accuracy"] == pytest.approx(max(values))
    # The study remembers what it maximizes: minimizing it afterwards would mix two searches.
    with pytest.raises(ValueError, match="was made to maximize 'accuracy'"):
        minimize(scored, max_evals=9, directory=tmp_path, study_name=result.study.study_name)


def test_maximize_says_what_to_return(tmp_path):
    def no_metric():
        x = {{uniform(0, 1)}}
        return {"loss": x}

    with pytest.raises(hyperbrace.TrialFailedError, match="without 'score'"):
        maximize(no_metric, max_evals=3, directory=tmp_path, show_progress=False)


def test_more_runs_that_many_trials_beyond_the_study(tmp_path):
    first = minimize(quadratic, max_evals=3, directory=tmp_path, show_progress=False)
    again = minimize(quadratic, more=4, directory=tmp_path, show_progress=False, max_evals=3)
    assert len(again.study.trials) == 7 and first.study.study_name == again.study.study_name
    with pytest.raises(ValueError, match="more= takes"):
        minimize(quadratic, more=0, directory=tmp_path)


def quadratic():
    x = {{uniform(-2, 2)}}
    return (x - 1) ** 2


def objects():
    x = {{uniform(-2, 2)}}
    layer = {{choice([dict(kind="dense"), dict(kind="conv")])}}
    width = {{choice([8, 16])}}
    return (x - 1) ** 2 + (layer["kind"] == "conv") + width / 100


def test_enqueued_configurations_run_first_by_real_value_index_or_source_text(tmp_path):
    seeds = [{"x": 1.0, "layer": 0, "width": 16}, {"x": 0.5, "layer": 'dict(kind="conv")'}]
    result = minimize(objects, max_evals=5, enqueue=seeds, directory=tmp_path, show_progress=False, seed=0)
    first, second = result.study.trials[:2]
    assert first.params == {"x": 1.0, "layer": 0, "width": 16}
    assert second.params["x"] == 0.5 and second.params["layer"] == 1
    assert len(result.study.trials) == 5
    # Resumed with the same seeds: they are not queued again.
    again = minimize(objects, max_evals=6, enqueue=seeds, directory=tmp_path, show_progress=False)
    assert sum(t.params.get("x") == 1.0 for t in again.study.trials) == 1
    with pytest.raises(ValueError, match="no hyperparameter 'depth'; its names are layer, width, x"):
        minimize(objects, max_evals=7, enqueue=[{"depth": 3}], directory=tmp_path, show_progress=False)
    with pytest.raises(ValueError, match="x=5 is outside uniform"):
        minimize(objects, max_evals=7, enqueue=[{"x": 5}], directory=tmp_path, show_progress=False)


def test_callbacks_get_the_study_and_each_finished_trial_and_can_stop_it(tmp_path):
    seen = []

    def record(study, trial):
        assert isinstance(study, optuna.Study) and isinstance(trial, optuna.trial.FrozenTrial)
        seen.append((trial.number, trial.state))
        if len(seen) == 4:
            study.stop()

    result = minimize(quadratic, max_evals=10, callbacks=[record], directory=tmp_path, show_progress=False)
    assert seen == [(n, TrialState.COMPLETE) for n in range(4)] and len(result.study.trials) == 4
    # Optuna's own callbacks work as they are.
    more = minimize(quadratic, max_evals=10, directory=tmp_path, show_progress=False,
                    callbacks=[optuna.study.MaxTrialsCallback(6, states=(TrialState.COMPLETE,))])
    assert len(more.study.trials) == 6
    with pytest.raises(TypeError, match="callbacks= takes a list of functions"):
        minimize(quadratic, callbacks=["print"], directory=tmp_path)


def test_trials_dataframe_has_real_values_and_one_row_per_trial(tmp_path):
    result = minimize(objects, max_evals=4, seed=1, directory=tmp_path, show_progress=False)
    frame = result.trials_dataframe()
    assert list(frame.index) == [0, 1, 2, 3]
    assert {"state", "loss", "x", "layer", "width", "duration_s", "epochs"} <= set(frame.columns)
    assert {v.replace('"', "'") for v in frame["layer"]} <= {"dict(kind='dense')", "dict(kind='conv')"}
    python = result.export_best("python")
    namespace: dict = {}
    exec(python.split("from hyperbrace import evaluate")[0], namespace)
    assert namespace["best_run"] == result.best_run
