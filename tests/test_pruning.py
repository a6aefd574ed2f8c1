"""Pruning: Keras fits report each epoch by themselves, PyTorch loops call report(), pruned trials are recorded.

Which configuration runs when is fixed with a small sampler (:class:`InOrder`), and the pruners are set so that the
expected pruning is certain (a clearly untrained model against a trained one), so nothing here depends on luck.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

import hyperbrace  # noqa: E402
from hyperbrace import STATUS_OK, choice, minimize  # noqa: E402,F401
from hyperbrace._context import PruningWarning, monitored_metric  # noqa: E402
from hyperbrace.integrations import keras as keras_integration  # noqa: E402
from hyperbrace.samplers import make_pruner  # noqa: E402
from helpers.in_order import InOrder  # noqa: E402
from helpers.keras_models import CountEpochs, epochs_seen  # noqa: E402  (the user's own callback)
from helpers.keras_models import small_classifier, small_digits  # noqa: E402

EPOCHS = 4


data = small_digits


def keras_model(x_train, y_train, x_val, y_val):
    # "frozen" learns nothing (learning rate 0): after one epoch its val_loss is far above a trained model's.
    model = small_classifier({"trains": 0.01, "frozen": 0.0}[{{choice(["trains", "frozen"], name="config")}}])
    # The user's callbacks given positionally (the 6th parameter of fit): they must keep working.
    history = model.fit(x_train, y_train, 32, EPOCHS, 0, [CountEpochs()], validation_data=(x_val, y_val))
    return {"loss": history.history["val_loss"][-1], "status": STATUS_OK, "epochs": len(history.history["loss"])}


@pytest.fixture(autouse=True)
def fresh_counts():
    epochs_seen.clear()


@pytest.mark.slow
def test_keras_bad_configuration_is_pruned_after_its_first_epoch(tmp_path):
    # Median pruning from the first epoch on, once one trial has finished: the frozen model (trial 1) is worse
    # than trial 0 at epoch 1, and is stopped there; trial 2 trains as well as trial 0 and runs to the end.
    result = minimize(
        keras_model, data, max_evals=3, algo=InOrder(config=["trains", "frozen", "trains"]),
        prune=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0), directory=tmp_path,
        study_name="keras-pruned", show_progress=False,
    )
    states = [t.state for t in result.study.trials]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    # The user's callback ran on every epoch of every trial, and the pruned trial ran exactly one epoch.
    assert dict(epochs_seen) == {0: EPOCHS, 1: 1, 2: EPOCHS}
    pruned = result.study.trials[1]
    assert list(pruned.intermediate_values) == [1]  # steps are epochs, counted from 1
    assert pruned.value == pytest.approx(pruned.intermediate_values[1])  # recorded with its last value
    assert list(result.study.trials[0].intermediate_values) == list(range(1, EPOCHS + 1))
    # Pruned trials count toward max_evals, are in the results table, and are never the best run.
    assert len(result.trials) == 3
    assert [r.state for r in result.trials] == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert result.trials[1].loss == pytest.approx(pruned.value)
    assert result.best_trial.number in (0, 2)
    assert result.best_run == {"config": "trains"}
    assert "Pruning stopped 1 of 3 trials early: 9 epochs trained instead of about 12 (3 saved, 25%)" in (
        result.summary()
    )


@pytest.mark.slow
def test_prune_none_trains_every_trial_to_the_end(tmp_path):
    # The same two configurations as above: without pruning, the frozen one trains to the end too.
    result = minimize(
        keras_model, data, max_evals=2, algo=InOrder(config=["trains", "frozen"]), prune=None,
        directory=tmp_path, study_name="keras-unpruned", show_progress=False,
    )
    assert [t.state for t in result.study.trials] == [TrialState.COMPLETE] * 2
    assert dict(epochs_seen) == {0: EPOCHS, 1: EPOCHS}
    assert [r.extras["epochs"] for r in result.trials] == [EPOCHS] * 2
    assert all(not t.intermediate_values for t in result.study.trials)  # nothing is reported without a pruner
    assert "Pruning" not in result.summary()


class PruneFrom(optuna.pruners.BasePruner):
    """Says "prune" at every epoch from ``step`` on."""

    def __init__(self, step: int) -> None:
        self.step = step

    def prune(self, study, trial) -> bool:
        return trial.last_step >= self.step


@pytest.mark.slow
@pytest.mark.parametrize("prune_from, epochs_trained, state", [
    (3, 3, TrialState.PRUNED),  # asked at epoch 3: stopped there
    (EPOCHS, EPOCHS, TrialState.COMPLETE),  # asked only after the last epoch: the training is done, keep it
])
def test_a_trial_is_never_pruned_after_its_last_epoch(tmp_path, prune_from, epochs_trained, state):
    result = minimize(
        keras_model, data, max_evals=1, algo=InOrder(config=["trains"]), prune=PruneFrom(prune_from),
        prune_on="val_loss",  # named: "auto" reports nothing before a trial has completed
        directory=tmp_path, show_progress=False,
    )
    assert [t.state for t in result.study.trials] == [state]
    assert dict(epochs_seen) == {0: epochs_trained}


def metric_model(x_train, y_train, x_val, y_val):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense({{choice([8, 16])}}), keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # Two fits in one trial: the pruner's step (the trial's epoch) goes on counting across them.
    first = model.fit(x_train, y_train, epochs=2, verbose=0, validation_data=(x_val, y_val))
    second = model.fit(x_train, y_train, epochs=2, verbose=0, validation_data=(x_val, y_val))
    accuracies = first.history["val_accuracy"] + second.history["val_accuracy"]
    return {"loss": -accuracies[-1], "accuracies": accuracies}


@pytest.mark.slow
def test_prune_on_val_accuracy_reports_it_negated_with_steps_across_fits(tmp_path):
    result = minimize(
        metric_model, data, max_evals=1, prune=optuna.pruners.NopPruner(), prune_on="val_accuracy",
        directory=tmp_path, study_name="keras-metric", show_progress=False,
    )
    trial = result.study.trials[0]
    accuracies = trial.user_attrs["accuracies"]
    assert list(trial.intermediate_values) == [1, 2, 3, 4]
    assert list(trial.intermediate_values.values()) == pytest.approx([-a for a in accuracies])


def no_validation_model(x_train, y_train, x_val, y_val):
    model = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense({{choice([8, 16])}}), keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(x_train, y_train, epochs=2, verbose=0, callbacks=[CountEpochs()])
    return history.history["loss"][-1]


@pytest.mark.slow
def test_without_validation_data_it_warns_once_and_does_not_prune(tmp_path):
    from hyperbrace.integrations.tracking import _wrap_keras_fit

    keras_integration._wrap_fit()
    _wrap_keras_fit()  # TensorBoard's fit wrapper around ours, as an earlier search with tensorboard=True leaves it
    with pytest.warns(PruningWarning) as warned:
        result = minimize(
            no_validation_model, data, max_evals=3, seed=0, prune=optuna.pruners.ThresholdPruner(upper=0.0),
            directory=tmp_path, study_name="keras-no-validation", show_progress=False,
        )
    ours = [w for w in warned if issubclass(w.category, PruningWarning)]
    messages = [str(w.message) for w in ours]
    assert len(messages) == 1
    assert ours[0].filename == __file__  # it points at the model function's fit call
    assert "a validation metric" in messages[0] and "validation_data" in messages[0]
    assert "(fit logged: loss)" in messages[0] and "prune_on=" in messages[0]
    # Every loss is above the threshold, yet nothing is pruned: there was nothing to judge.
    assert [t.state for t in result.study.trials] == [TrialState.COMPLETE] * 3
    assert dict(epochs_seen) == {0: 2, 1: 2, 2: 2}


def test_keras_fit_outside_a_search_is_untouched():
    keras_integration._wrap_fit()  # what the first trial of a search does
    assert getattr(keras.Model.fit, "__hyperbrace_wrapped__", False)
    # Outside a search the wrapper calls Keras' fit as it is: nothing reported, the user's list left as it was.
    x, y, _, _ = data()
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    callbacks = [keras.callbacks.History()]
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=callbacks)
    assert len(history.history["loss"]) == 2 and len(callbacks) == 1


def torch_model(x_train, y_train, x_val, y_val):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    learning_rate = {"trains": 0.01, "frozen": 0.0}[{{choice(["trains", "frozen"], name="config")}}]
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    xv, yv = torch.from_numpy(x_val), torch.from_numpy(y_val).long()
    for epoch in range(1, EPOCHS + 1):
        epochs_seen[hyperbrace.current_trial().number] += 1
        for batch in range(0, len(x), 32):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x[batch:batch + 32]), y[batch:batch + 32]).backward()
            optimizer.step()
        with torch.no_grad():
            val_loss = torch.nn.functional.cross_entropy(net(xv), yv).item()
        hyperbrace.report(val_loss, step=epoch)
        if hyperbrace.should_prune():
            raise hyperbrace.Pruned()
    return val_loss


@pytest.mark.slow
def test_pytorch_loop_with_report_is_pruned(tmp_path):
    result = minimize(
        torch_model, data, max_evals=3, algo=InOrder(config=["trains", "frozen", "trains"]),
        prune=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0), directory=tmp_path,
        study_name="torch-pruned", show_progress=False,
    )
    assert [r.state for r in result.trials] == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert dict(epochs_seen) == {0: EPOCHS, 1: 1, 2: EPOCHS}
    assert result.study.trials[1].user_attrs["hb.steps"] == 1
    assert result.best_run == {"config": "trains"}


def test_a_diverged_trial_reporting_nan_is_pruned_at_once(tmp_path):
    # Anything else reports by hand; a NaN goes to the pruner as it is, and Optuna's pruners stop such a trial.
    def training(steps):
        diverged = {{choice([False, True], name="diverged")}}
        for step in range(1, steps + 1):
            epochs_seen[hyperbrace.current_trial().number] += 1
            hyperbrace.report(float("nan") if diverged else 1.0 / step, step)
            if hyperbrace.should_prune():
                raise hyperbrace.Pruned()
        return 1.0 / steps

    result = minimize(
        training, lambda: 10, max_evals=2, algo=InOrder(diverged=[False, True]),
        prune=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0), directory=tmp_path,
        study_name="diverged", show_progress=False,
    )
    assert [r.state for r in result.trials] == ["COMPLETE", "PRUNED"]
    assert dict(epochs_seen) == {0: 10, 1: 1}
    assert result.trials[1].loss is None  # no finite value was ever reported


def reporting_model(steps):
    bad = {{choice([False, True], name="bad")}}
    for step in range(1, steps + 1):
        hyperbrace.report(5.0 if bad else 0.5, step)
        if hyperbrace.should_prune():
            raise hyperbrace.Pruned()
    return 0.5


@pytest.mark.slow
def test_pruning_in_worker_processes_goes_through_the_shared_study(tmp_path):
    # Two worker processes; a threshold pruner judges each report from the study itself, whichever process made it.
    result = minimize(
        reporting_model, lambda: 6, max_evals=4, n_jobs=2, algo=InOrder(bad=[False, True, False, True]),
        prune=optuna.pruners.ThresholdPruner(upper=1.0), directory=tmp_path, study_name="workers",
        show_progress=False,
    )
    by_number = sorted(result.study.trials, key=lambda t: t.number)
    assert [t.state for t in by_number] == [TrialState.COMPLETE, TrialState.PRUNED] * 2
    assert [len(t.intermediate_values) for t in by_number] == [6, 1, 6, 1]


@pytest.mark.parametrize(
    "prune_on, expected",
    [
        ("val_loss", ("val_loss", "min")),
        ("val_accuracy", ("val_accuracy", "max")),
        ("val_sparse_categorical_accuracy", ("val_sparse_categorical_accuracy", "max")),
        ("val_auc_1", ("val_auc_1", "max")),
        ("val_mean_absolute_error", ("val_mean_absolute_error", "min")),
        ("val_f1_score", ("val_f1_score", "max")),
        (("val_custom", "max"), ("val_custom", "max")),
    ],
)
def test_the_monitored_metric_direction_follows_its_name(prune_on, expected):
    assert monitored_metric(prune_on) == expected


def test_a_metric_name_without_direction_is_refused_before_the_search(tmp_path):
    with pytest.raises(ValueError, match=r"prune_on=\('val_custom', 'max'\)"):
        minimize(keras_model, data, max_evals=1, prune="median", prune_on="val_custom", directory=tmp_path)
    with pytest.raises(ValueError, match="'min' or 'max'"):
        monitored_metric(("val_custom", "up"))


def test_pruner_names():
    assert isinstance(make_pruner("asha"), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(make_pruner("hyperband"), optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner("median"), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner(None), optuna.pruners.NopPruner)
    custom = optuna.pruners.PercentilePruner(25.0)
    assert make_pruner(custom) is custom
    with pytest.raises(ValueError, match="not a known pruner"):
        make_pruner("sometimes")
