"""prune_on="auto" (the default): trials are judged by the validation metric the model's returned loss is.

The rule is tested on its own (``identify``), on a real Optuna study with trials that run side by side (the second
learns the metric from the first while it runs, and reports the epochs it kept), and in real Keras searches.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import optuna  # noqa: E402
import pytest  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from hyperbrace import choice, minimize  # noqa: E402,F401
from hyperbrace._context import PruningWarning, TrialContext  # noqa: E402
from hyperbrace.prune_on import PRUNE_ON_ATTR, MetricWatch, identify, settle, watch  # noqa: E402
from hyperbrace.versions import SpaceChanged  # noqa: E402
from helpers.in_order import InOrder  # noqa: E402
from helpers.keras_models import small_classifier, small_digits  # noqa: E402

EPOCHS = 4


# -- the rule ---------------------------------------------------------------------------------------------------

def epochs_of(*logs: dict) -> list[tuple[int, dict]]:
    return list(enumerate(logs, start=1))


def test_a_returned_loss_equal_to_a_logged_validation_loss_is_that_metric():
    epochs = epochs_of({"loss": 0.5, "val_loss": 0.41, "val_accuracy": 0.8}, {"loss": 0.3, "val_loss": 0.35})
    assert identify(0.35, epochs) == (("val_loss", "min"), True)


def test_minus_the_best_epochs_accuracy_is_the_accuracy_maximized():
    epochs = epochs_of({"val_loss": 0.4, "val_accuracy": 0.80}, {"val_loss": 0.5, "val_accuracy": 0.83},
                       {"val_loss": 0.6, "val_accuracy": 0.79})
    assert identify(-0.83, epochs) == (("val_accuracy", "max"), True)
    # Float noise between fit's validation pass and a later model.evaluate on the same data is still "equal".
    assert identify(-0.83 + 2e-6, epochs) == (("val_accuracy", "max"), True)


def test_training_metrics_are_never_candidates():
    # The model returns its training accuracy: pruning on it would keep the configurations that overfit.
    epochs = epochs_of({"accuracy": 0.97, "val_loss": 0.5, "val_accuracy": 0.81})
    assert identify(-0.97, epochs) == (("val_accuracy", "max"), False)


def test_a_name_that_does_not_tell_its_direction_takes_it_from_the_sign():
    epochs = epochs_of({"val_score": 0.62, "val_loss": 0.9})
    assert identify(-0.62, epochs) == (("val_score", "max"), True)
    assert identify(0.62, epochs) == (("val_score", "min"), True)


def test_a_loss_scored_on_other_data_follows_the_metric_of_its_direction():
    epochs = epochs_of({"val_loss": 0.41, "val_accuracy": 0.86, "val_auc": 0.95})
    assert identify(-0.84, epochs) == (("val_accuracy", "max"), False)  # the nearest higher-is-better one
    assert identify(0.52, epochs) == (("val_loss", "min"), False)


def test_nothing_is_learnt_without_a_validation_metric_of_the_loss_direction():
    assert identify(0.3, epochs_of({"loss": 0.3, "accuracy": 0.9})) is None
    assert identify(0.3, epochs_of({"val_accuracy": 0.9})) is None
    assert identify(0.3, []) is None


# -- trials side by side, on a real study -----------------------------------------------------------------------

class AskedAt(optuna.pruners.BasePruner):
    """Records each step it was asked at, per trial; prunes from ``prune_from`` on (never, by default)."""

    def __init__(self, prune_from: int = 10**9) -> None:
        self.asked: dict[int, list[int]] = {}
        self.prune_from = prune_from

    def prune(self, study, trial) -> bool:
        self.asked.setdefault(trial.number, []).append(trial.last_step)
        return trial.last_step >= self.prune_from


ACCURACIES = {0: [0.5, 0.7, 0.8], 1: [0.4, 0.6, 0.65], 2: [0.3, 0.35, 0.4]}


def logs(trial: int, epoch: int) -> dict:
    accuracy = ACCURACIES[trial][epoch - 1]
    return {"loss": 1 - accuracy, "val_loss": 1.2 - accuracy, "val_accuracy": accuracy}


def test_trials_running_beside_the_first_learn_its_metric_and_report_what_they_kept():
    pruner = AskedAt(prune_from=3)
    study = optuna.create_study(pruner=pruner)
    first, second = (TrialContext(study.ask()) for _ in range(2))
    watches = [watch(context, "auto") for context in (first, second)]
    # Two epochs each, before any trial has completed: nothing is reported, nothing is asked.
    for epoch in (1, 2):
        for number, metric_watch in enumerate(watches):
            assert metric_watch.observe(epoch, logs(number, epoch), last=False) is False
    assert first.trial.study.trials[0].intermediate_values == {} and pruner.asked == {}

    # The first trial ends and returns minus its best validation accuracy.
    assert watches[0].observe(3, logs(0, 3), last=True) is False
    settle(first, -0.8)
    assert study.user_attrs[PRUNE_ON_ATTR] == {"name": "val_accuracy", "direction": "max", "trial": 0, "exact": True}
    assert study.trials[0].intermediate_values == pytest.approx({1: -0.5, 2: -0.7, 3: -0.8})
    assert pruner.asked[0] == [1, 2]  # asked at each kept epoch but its last, as it would have been
    study.tell(first.trial, -0.8)

    # The second learns it at its next epoch: it reports the epochs it kept, asked after each, then this one.
    assert watches[1].observe(3, logs(1, 3), last=False) is True  # AskedAt prunes from step 3 on
    assert study.trials[1].intermediate_values == pytest.approx({1: -0.4, 2: -0.6, 3: -0.65})
    assert pruner.asked[1] == [1, 2, 3]
    assert watches[1].last_value == pytest.approx(0.65) and watches[1].name == "val_accuracy"

    # A trial started now reports every epoch as it ends.
    third = TrialContext(study.ask())
    assert watch(third, "auto").observe(1, logs(2, 1), last=False) is False
    assert study.trials[2].intermediate_values == pytest.approx({1: -0.3}) and pruner.asked[2] == [1]


def test_a_named_metric_is_reported_from_the_first_epoch_of_the_first_trial():
    pruner = AskedAt()
    study = optuna.create_study(pruner=pruner)
    context = TrialContext(study.ask())
    metric_watch = MetricWatch(context, "val_loss")
    for epoch in (1, 2):
        metric_watch.observe(epoch, logs(0, epoch), last=epoch == 2)
    assert study.trials[0].intermediate_values == pytest.approx({1: 0.7, 2: 0.5})
    assert pruner.asked == {0: [1]} and PRUNE_ON_ATTR not in study.user_attrs


# -- real Keras searches ----------------------------------------------------------------------------------------

data = small_digits


def accuracy_model(x_train, y_train, x_val, y_val):
    # "frozen" learns nothing (learning rate 0): after one epoch its accuracy is far under a trained model's.
    model = small_classifier({"trains": 0.01, "frozen": 0.0}[{{choice(["trains", "frozen"], name="config")}}])
    history = model.fit(x_train, y_train, epochs=EPOCHS, verbose=0, validation_data=(x_val, y_val))
    # The Hyperas article's way: minus the validation accuracy (here the best epoch's).
    return {"loss": -max(history.history["val_accuracy"]), "accuracies": history.history["val_accuracy"]}


@pytest.mark.slow
def test_a_model_returning_minus_its_accuracy_is_pruned_on_its_accuracy(tmp_path):
    result = minimize(
        accuracy_model, data, max_evals=3, algo=InOrder(config=["trains", "frozen", "trains"]),
        prune=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0), directory=tmp_path,
        show_progress=False,
    )
    study = result.study
    assert study.user_attrs[PRUNE_ON_ATTR] == {"name": "val_accuracy", "direction": "max", "trial": 0, "exact": True}
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    # The first trial's epochs were reported when it completed: minus its validation accuracies, epochs 1-4.
    first = study.trials[0]
    assert first.intermediate_values == pytest.approx(
        {epoch: -a for epoch, a in enumerate(first.user_attrs["accuracies"], start=1)})
    assert list(study.trials[1].intermediate_values) == [1]  # the frozen model, stopped after its first epoch
    assert "Judged by val_accuracy (prune_on='auto', learnt from trial 0)." in result.summary()

    # A new version of the search (its space edited) judges by the same metric from its first trial on.
    with pytest.warns(SpaceChanged, match="Going on as version 2") as warned:
        again = minimize(
            accuracy_model_wider, data, max_evals=1, algo=InOrder(config=["trains"]), prune="median",
            directory=tmp_path, study_name=result.study.study_name, on_space_change="fresh", show_progress=False,
        )
    assert [w.filename for w in warned if w.category is SpaceChanged] == [__file__]  # at this call, not in hyperbrace
    assert again.study.study_name != study.study_name
    assert again.study.user_attrs[PRUNE_ON_ATTR]["name"] == "val_accuracy"


def accuracy_model_wider(x_train, y_train, x_val, y_val):
    model = small_classifier({"trains": 0.01, "frozen": 0.0, "slow": 0.001}[
        {{choice(["trains", "frozen", "slow"], name="config")}}])
    history = model.fit(x_train, y_train, epochs=2, verbose=0, validation_data=(x_val, y_val))
    return -history.history["val_accuracy"][-1]


def scored_elsewhere_model(x_train, y_train, x_val, y_val):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64,)), keras.layers.Dense({{choice([16, 32])}}, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train[:150], y_train[:150], epochs=2, verbose=0, validation_split=0.25)
    # Scored on other data than fit validated on (as the article's validation_split + evaluate on a test set).
    _, accuracy = model.evaluate(x_val, y_val, verbose=0)
    return -accuracy  # the line the warning points at


@pytest.mark.slow
def test_a_loss_scored_on_other_data_is_followed_by_the_accuracy_with_a_warning_at_the_return(tmp_path):
    with pytest.warns(PruningWarning) as warned:
        result = minimize(scored_elsewhere_model, data, max_evals=2, seed=0, prune="median", directory=tmp_path,
                          show_progress=False)
    ours = [w for w in warned if issubclass(w.category, PruningWarning)]
    assert len(ours) == 1
    message = str(ours[0].message)
    assert "'val_accuracy'" in message and "prune_on='val_accuracy'" in message
    assert ours[0].filename == __file__
    with open(__file__) as source:
        assert "return -accuracy" in source.read().splitlines()[ours[0].lineno - 1]
    learnt = result.study.user_attrs[PRUNE_ON_ATTR]
    assert learnt["name"] == "val_accuracy" and learnt["exact"] is False
    assert all(len(t.intermediate_values) == 2 for t in result.study.trials)
