"""algo="auto" (which sampler each trial gets) and prune="asha" (where its rungs are): the defaults' logic."""

from __future__ import annotations

import inspect
import warnings

import optuna
import pytest
from optuna.trial import TrialState

import hyperbrace.samplers as samplers
from hyperbrace import minimize
from hyperbrace.samplers import AutoSampler, EpochScaledASHA, make_pruner, make_sampler
from hyperbrace.template import compile_model

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)


def test_the_defaults_are_auto_and_asha():
    parameters = inspect.signature(minimize).parameters
    assert parameters["algo"].default == "auto"
    assert parameters["prune"].default == "asha"
    assert isinstance(make_sampler("auto", seed=0), AutoSampler)
    assert isinstance(make_pruner("asha"), EpochScaledASHA)


def quadratic(trial):
    return (trial.suggest_float("x", -2, 2) - 1) ** 2 + trial.suggest_int("n", 1, 8)


def chosen(study):
    return [t.system_attrs["hyperbrace.sampler"] for t in study.trials]


def test_auto_uses_the_gp_for_a_sequential_numeric_search():
    study = optuna.create_study(sampler=AutoSampler(seed=0))
    study.optimize(quadratic, n_trials=12)
    assert chosen(study) == ["gp"] * 12
    # Past the startup trials the GP models the space: its suggestions differ from the random sampler's.
    random = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    random.optimize(quadratic, n_trials=12)
    assert study.trials[11].params != random.trials[11].params


def test_auto_uses_tpe_once_trials_are_pruned():
    # Optuna's GP learns from completed trials only: with a pruner at work, TPE (which also learns from where
    # trials were pruned) takes over.
    study = optuna.create_study(sampler=AutoSampler(seed=0))
    study.optimize(quadratic, n_trials=2)
    trial = study.ask()
    trial.suggest_float("x", -2, 2)
    trial.report(5.0, 1)
    study.tell(trial, state=TrialState.PRUNED)
    study.optimize(quadratic, n_trials=2)
    assert chosen(study) == ["gp", "gp", "gp", "tpe", "tpe"]


def test_auto_uses_tpe_for_conditional_spaces_and_the_gp_for_categorical_ones():
    def conditional(trial):
        if trial.suggest_categorical("deep", [False, True]):
            return trial.suggest_float("width", 1, 2)
        return trial.suggest_float("rate", 0, 1)

    study = optuna.create_study(sampler=AutoSampler(seed=1))
    study.optimize(conditional, n_trials=8)
    names = chosen(study)
    assert names[0] == "gp" and names[-1] == "tpe"  # once two completed trials asked for different parameters

    categorical = optuna.create_study(sampler=AutoSampler(seed=0))
    categorical.optimize(lambda t: len(t.suggest_categorical("op", ["a", "bb", "ccc"])), n_trials=3)
    assert chosen(categorical) == ["gp"] * 3


def test_auto_reads_the_templates_before_the_first_trial():
    def all_choices():
        optimizer = {{choice(["adam", "sgd"])}}  # noqa: F821
        units = {{choice([32, 64])}}  # noqa: F821
        return len(optimizer) + units

    def mixed():
        return {{uniform(0, 1)}} + {{choice([1, 2])}}  # noqa: F821

    def looped():
        return sum({{uniform(0, 1, name=f"w{i}")}} for i in range(2))  # noqa: F821

    study = optuna.create_study()
    assert make_sampler("auto", sites=compile_model(all_choices).sites).choose(study) == "gp"
    assert make_sampler("auto", sites=compile_model(mixed).sites).choose(study) == "gp"
    assert make_sampler("auto", sites=compile_model(looped).sites).choose(study) == "tpe"  # names made in the trial
    assert make_sampler("auto", sites=compile_model(mixed).sites, parallel=True).choose(study) == "tpe"


def test_auto_leaves_the_gp_past_its_trial_limit(monkeypatch):
    monkeypatch.setattr(samplers, "GP_MAX_TRIALS", 3)
    study = optuna.create_study(sampler=AutoSampler(seed=0))
    study.optimize(quadratic, n_trials=5)
    assert chosen(study) == ["gp", "gp", "gp", "tpe", "tpe"]


def test_auto_in_a_search_finds_the_minimum(tmp_path):
    def objective():
        x = {{uniform(-2, 2)}}  # noqa: F821
        return (x - 1) ** 2

    result = minimize(objective, max_evals=15, seed=0, directory=tmp_path, show_progress=False)
    assert result.best_run["x"] == pytest.approx(1, abs=0.15)
    assert {t.system_attrs["hyperbrace.sampler"] for t in result.study.trials} == {"gp"}


@pytest.mark.parametrize("epochs, rung", [(1, 1), (5, 1), (10, 1), (15, 2), (20, 2), (30, 3), (100, 11)])
def test_asha_first_rung_is_a_ninth_of_the_epochs(epochs, rung):
    assert EpochScaledASHA.first_rung(epochs) == rung


def run_trial(study, curve):
    """A trial that reports ``curve`` (one value an epoch) until the pruner stops it; returns epochs run."""
    trial = study.ask()
    for epoch, value in enumerate(curve, start=1):
        trial.report(value, epoch)
        if trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            return epoch
    study.tell(trial, curve[-1])
    return len(curve)


def test_asha_learns_the_epochs_from_the_first_full_trial_and_judges_at_its_rungs():
    study = optuna.create_study(pruner=make_pruner("asha"))
    good = [1.0 - 0.05 * e for e in range(15)]
    bad = [5.0] * 15
    assert run_trial(study, bad) == 15  # nothing is pruned before one trial has completed
    assert run_trial(study, good) == 15  # the best so far at every rung goes on
    # 15 epochs: rungs at 2 and 6. A bad trial is judged at epoch 2, not at epoch 1 (Optuna's "auto" would).
    assert run_trial(study, bad) == 2
    assert study.pruner._min_resource == 2


def test_asha_never_prunes_a_trial_that_has_trained_to_the_end():
    # 9 epochs: rungs at 1, 3 and 9, the last on the last epoch. A trial that is worst there has finished
    # training all the same; pruning it then would throw the finished work away.
    study = optuna.create_study(pruner=make_pruner("asha"))
    assert run_trial(study, [1.0] * 9) == 9  # learns the length
    assert run_trial(study, [0.5] * 8 + [2.0]) == 9
    assert run_trial(study, [0.1] * 9) == 9
    assert run_trial(study, [0.05] * 8 + [5.0]) == 9  # best at rungs 1 and 3, worst at epoch 9
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert run_trial(study, [3.0] * 9) == 1  # while earlier rungs still prune


def test_median_pruner_compares_with_completed_trials_only():
    # Why the old default stalled: Optuna's median is taken over *completed* trials, the survivors. Pruned trials
    # never lower the bar, so it only rises as good trials complete, and new trials are pruned ever more often.
    study = optuna.create_study(pruner=make_pruner("median"))
    for level in (1.0, 2.0, 3.0, 4.0, 5.0):
        run_trial(study, [level] * 10)
    for _ in range(4):
        assert run_trial(study, [10.0] * 10) == 2  # stopped at the warm-up's end
    # Counting those four, the median at epoch 2 would be 5.0; over completed trials it is still 3.0.
    assert run_trial(study, [3.5] * 10) == 2
    assert run_trial(study, [2.9] * 10) == 10


def test_one_process_search_gets_the_idle_cores_and_gives_the_threads_back(monkeypatch):
    import os

    import torch

    from hyperbrace.threads import one_process_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(os, "getloadavg", lambda: (40.0, 40.0, 40.0))  # a busy machine
        with one_process_threads() as cap:
            assert cap == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's choice is left alone
        with one_process_threads() as cap:
            assert cap is None and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(2)


def test_tpe_taking_over_from_the_gp_does_not_replay_its_start_up_configurations():
    # Both samplers start with random trials; after the first pruned trial TPE takes over. With one seed for both it
    # replayed the GP's first configurations (seen in the demo: trials 4 and 5 repeated trials 0 and 1).
    from hyperbrace.samplers import AutoSampler

    study = optuna.create_study(sampler=AutoSampler(seed=0))
    seen = []
    for number in range(6):
        trial = study.ask()
        params = (trial.suggest_float("x", 0, 1), trial.suggest_categorical("c", ["a", "b", "c"]))
        assert params not in seen
        seen.append(params)
        if number == 3:
            trial.report(1.0, 1)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, params[0])
    assert [t.system_attrs["hyperbrace.sampler"] for t in study.trials] == ["gp"] * 4 + ["tpe"] * 2
