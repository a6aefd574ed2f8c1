"""The Hyperas layer without a deep-learning framework: hyperopt's distribution meanings, ``Trials`` (ours and
hyperopt's), ``algo``, ``data()``'s locals, failures, ``eval_space`` / ``return_space``, where runs go, voting."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import optuna
import pytest

from hyperbrace import TemplateError, TrialFailedError
from hyperbrace.hyperas import STATUS_FAIL, STATUS_OK, AllTrialsFailed, Trials, VotingModel, anneal, optim, rand, tpe
from hyperbrace.hyperas._algorithms import engine_algorithm
from hyperbrace.hyperas.distributions import (
    choice,
    conditional,
    lognormal,
    loguniform,
    pchoice,
    qloguniform,
    quniform,
    randint,
    uniform,
    uniformint,
)
from hyperbrace.space import InvalidDistribution

QUIET = dict(verbose=False)


# -- distributions: hyperopt's meanings ------------------------------------------------------------------------------


def _draws(distribution, n=300, seed=0):
    """``n`` values of ``distribution`` as a random sampler draws them through the engine."""
    rng = np.random.default_rng(seed)
    engine = distribution.engine_distribution()
    values = []
    for _ in range(n):
        if isinstance(engine, optuna.distributions.CategoricalDistribution):
            raw = engine.choices[rng.integers(len(engine.choices))]
        elif isinstance(engine, optuna.distributions.IntDistribution):
            raw = int(rng.integers(engine.low, engine.high + 1))
        elif engine.log:
            raw = math.exp(rng.uniform(math.log(engine.low), math.log(engine.high)))
        elif engine.step is not None:
            raw = engine.low + engine.step * rng.integers(0, round((engine.high - engine.low) / engine.step) + 1)
        else:
            raw = rng.uniform(engine.low, engine.high)
        values.append(distribution.to_value(raw))
    return values


def test_loguniform_takes_exponents():
    values = _draws(loguniform(-10, 0))
    assert all(math.exp(-10) <= v <= 1 for v in values)
    # log-uniform: about half the draws below e**-5
    assert 0.35 < np.mean([v < math.exp(-5) for v in values]) < 0.65
    assert repr(loguniform(-10, 0)) == "loguniform(-10, 0)"


def test_qloguniform_rounds_the_exponential():
    values = _draws(qloguniform(math.log(16), math.log(1024), 16))
    assert all(v % 16 == 0 and 16 <= v <= 1024 for v in values)


def test_quniform_rounds_to_multiples_as_floats():
    values = _draws(quniform(0, 10, 2.5))
    assert set(values) <= {0.0, 2.5, 5.0, 7.5, 10.0} and len(set(values)) > 2
    assert all(isinstance(v, float) for v in values)


def test_randint_and_uniformint_ranges():
    assert set(_draws(randint(5))) == {0, 1, 2, 3, 4}
    assert set(_draws(randint(2, 4))) == {2, 3}
    assert set(_draws(uniformint(1, 3))) == {1, 2, 3}


def test_lognormal_is_positive_and_centered_on_exp_mu():
    values = _draws(lognormal(0, 1), n=400)
    assert min(values) > 0 and 0.7 < np.median(values) < 1.4


def test_impossible_arguments_say_what_is_wrong():
    with pytest.raises(InvalidDistribution, match="greater than high"):
        loguniform(0, -10)
    with pytest.raises(InvalidDistribution, match="exponent"):
        loguniform(-1000, 0)
    with pytest.raises(InvalidDistribution, match="exponent"):
        loguniform(1, 1000)


def test_distributions_and_conditional_are_callable_in_user_code():
    assert choice([1, 2]).options == (1, 2)
    assert pchoice([(0.2, "a"), (0.8, "b")]).probabilities == (0.2, 0.8)
    assert uniform(0, 1).engine_distribution().high == 1.0
    assert conditional("x") == "x"


# -- algo ----------------------------------------------------------------------------------------------------------------


def test_algo_mapping_accepts_ours_hyperopts_and_partials():
    import functools

    import hyperopt

    assert engine_algorithm(tpe.suggest) == "tpe"
    assert engine_algorithm(rand.suggest) == "random"
    assert engine_algorithm(anneal.suggest) == "tpe"
    assert engine_algorithm(hyperopt.tpe.suggest) == "tpe"
    assert engine_algorithm(hyperopt.rand.suggest) == "random"
    assert engine_algorithm(hyperopt.anneal.suggest) == "tpe"
    assert engine_algorithm(functools.partial(hyperopt.tpe.suggest, n_startup_jobs=5)) == "tpe"
    assert engine_algorithm("random") == "random"
    with pytest.raises(ValueError, match="tpe.suggest"):
        engine_algorithm(len)


# -- whole searches on plain-Python models ----------------------------------------------------------------------------


def data():
    nb_classes = 3  # used by model() without being returned, as Hyperas scripts do
    weights = np.array([1.0, 2.0])
    return weights, 0.5


def model(weights, target):
    """Braces in a docstring are text: {{choice([1, 2])}}."""
    x = {{uniform(0, 1)}}  # a comment with {{braces}}
    optimizer = {{choice(['sgd', 'adam'])}}
    if {{choice(['three', 'four'])}} == 'four':
        x = x + nb_classes  # noqa: F821 (a local of data())
    layers = {{choice([dict(kind='dense'), dict(kind='dropout')])}}
    return {'loss': float((x - target) ** 2 + weights.sum()), 'status': STATUS_OK, 'model': (x, optimizer, layers),
            'accuracy': 1 - x}


def test_minimize_gives_hyperas_names_indices_and_the_best_model():
    trials = Trials()
    best_run, best_model = optim.minimize(model, data, tpe.suggest, 6, trials, **QUIET)
    assert set(best_run) == {'x', 'optimizer', 'optimizer_1', 'layers'}  # the `if` template takes the previous name
    assert best_run['optimizer'] in (0, 1) and best_run['optimizer_1'] in (0, 1) and best_run['layers'] in (0, 1)
    best = min(trials.results, key=lambda r: r['loss'])
    assert best_model == best['model'] and best['loss'] == min(trials.losses())
    assert trials.argmin == best_run
    assert trials.best_trial['result'] is best
    assert 'accuracy' in best  # what the model returned is kept


def test_eval_space_gives_values_and_the_source_text_of_object_options():
    best_run, _ = optim.minimize(model, data, rand.suggest, 4, Trials(), eval_space=True, **QUIET)
    assert best_run['optimizer'] in ('sgd', 'adam') and best_run['optimizer_1'] in ('three', 'four')
    assert best_run['layers'] in ("dict(kind='dense')", "dict(kind='dropout')")


def test_return_space_maps_names_to_their_distributions():
    _, _, space = optim.minimize(model, data, tpe.suggest, 3, Trials(), return_space=True, **QUIET)
    assert repr(space['x']) == 'uniform(0, 1)'
    assert repr(space['optimizer']) == "choice(['sgd', 'adam'])"


def test_the_same_seed_gives_the_same_search():
    first, second = Trials(), Trials()
    optim.minimize(model, data, tpe.suggest, 3, first, rseed=7, **QUIET)
    optim.minimize(model, data, tpe.suggest, 3, second, rseed=7, **QUIET)
    assert first.losses() == second.losses()


def test_trials_api_and_only_the_best_model_kept_in_memory():
    trials = Trials()
    optim.minimize(model, data, rand.suggest, 5, trials, **QUIET)
    assert len(trials) == 5 and len(list(trials)) == 5 and trials[0]['tid'] == 0
    assert trials.tids == [0, 1, 2, 3, 4] and trials.statuses() == ['ok'] * 5
    assert all(t['state'] == 2 for t in trials)
    assert sum('model' in r for r in trials.results) == 1
    assert set(trials.vals) == {'x', 'optimizer', 'optimizer_1', 'layers'} and len(trials.vals['x']) == 5
    misc = trials.trials[0]['misc']
    assert misc['idxs']['x'] == [0] and isinstance(misc['vals']['optimizer'][0], int)
    assert misc['real_vals']['optimizer'] in ('sgd', 'adam')


def test_a_hyperopt_trials_object_is_filled():
    import hyperopt

    trials = hyperopt.Trials()
    best_run, best_model = optim.minimize(model, data, hyperopt.tpe.suggest, 4, trials, **QUIET)
    assert len(trials) == 4 and trials.statuses() == ['ok'] * 4
    assert trials.argmin == best_run
    assert trials.best_trial['result']['model'] == best_model
    assert all(len(t['misc']['vals']['x']) == 1 for t in trials.trials)


def test_max_evals_counts_the_trials_already_recorded_as_hyperopt_does():
    trials = Trials()
    optim.minimize(model, data, rand.suggest, 3, trials, **QUIET)
    optim.minimize(model, data, rand.suggest, 5, trials, **QUIET)
    assert len(trials) == 5 and trials.tids == [0, 1, 2, 3, 4]


def conditional_model():
    branch = {{choice(['short', 'long'])}}
    if branch == 'long':
        extra = {{uniform(0, 1)}}
        return extra
    return 0.5


def test_unsampled_parameters_have_empty_vals():
    trials = Trials()
    optim.minimize(conditional_model, None, rand.suggest, 6, trials, **QUIET)
    short = [t for t in trials if t['misc']['vals']['branch'] == [0]]
    assert short and all(t['misc']['vals']['extra'] == [] for t in short)


def flaky_model():
    value = {{uniform(0, 1)}}
    if value > 0.5:
        raise RuntimeError('diverged')
    if value > 0.3:
        return {'loss': value, 'status': STATUS_FAIL}
    return {'loss': value, 'status': STATUS_OK}


def test_failed_trials_are_recorded_and_the_search_goes_on():
    trials = Trials()
    best_run, best_model = optim.minimize(flaky_model, None, rand.suggest, 12, trials, rseed=3, **QUIET)
    statuses = trials.statuses()
    assert len(trials) == 12 and 'fail' in statuses and 'ok' in statuses
    raised = [r for r in trials.results if r['status'] == 'fail' and 'diverged' in r.get('error', '')]
    assert raised
    assert best_run['value'] <= 0.3 and best_model is None


def broken_model():
    value = {{uniform(0, 1)}}
    raise ValueError(f"shapes do not match: {value > 2}")


def test_a_bug_stops_the_search_after_three_alike_failures_and_trials_keep_them():
    trials = Trials()
    with pytest.raises(TrialFailedError, match="shapes do not match"):
        optim.minimize(broken_model, None, tpe.suggest, 10, trials, **QUIET)
    assert len(trials) == 3 and trials.statuses() == ['fail'] * 3
    with pytest.raises(AllTrialsFailed):
        trials.best_trial


def misspelt_model():
    value = {{uniform(0, 1)}}
    return undefined_name * value  # noqa: F821


def test_a_name_error_stops_the_search_at_its_first_trial():
    trials = Trials()
    with pytest.raises(TrialFailedError, match="undefined_name"):
        optim.minimize(misspelt_model, None, tpe.suggest, 10, trials, **QUIET)
    assert len(trials) == 1 and trials.statuses() == ['fail']


def test_a_template_mistake_names_the_file_and_line():
    def bad():
        return {{loguniform(1, 1000)}}

    with pytest.raises(TemplateError, match="test_hyperas_api.py"):
        optim.minimize(bad, None, tpe.suggest, 2, Trials(), **QUIET)


def data_with_arguments(scale, offset=0):
    size = scale * 10
    return size + offset


def model_reads_data_locals_by_name(size):
    return abs({{uniform(0, 1)}} * size - scale)  # noqa: F821 (scale: an argument of data())


def test_data_args_and_data_locals():
    best_run, _ = optim.minimize(model_reads_data_locals_by_name, data_with_arguments, tpe.suggest, 2, Trials(),
                                 data_args=(3,), **QUIET)
    assert set(best_run) == {'abs'}  # the word before the template's `(`


def data_returning_nothing_useful():
    x_train, y_train = [1, 2, 3], [1, 0, 1]
    x_test, y_test = [4], [0]
    return x_train, y_train, x_test  # one short: Hyperas ignored the return value and used the names


def model_takes_four(x_train, y_train, x_test, y_test):
    return {{uniform(0, 1)}} + len(x_train) + len(y_test)


def test_parameters_missing_from_the_return_value_are_taken_by_name_from_data_locals():
    trials = Trials()
    optim.minimize(model_takes_four, data_returning_nothing_useful, tpe.suggest, 2, trials, **QUIET)
    assert all(4 <= loss <= 5 for loss in trials.losses())


def model_takes_unknown(features):
    return {{uniform(0, 1)}}


def test_parameters_that_cannot_be_filled_are_a_clear_error():
    with pytest.raises(TypeError, match="no local variable named features"):
        optim.minimize(model_takes_unknown, data_returning_nothing_useful, tpe.suggest, 2, Trials(), **QUIET)


def helper_uses_data_local():
    return nb_classes * 10  # noqa: F821 (a local of data(), seen through functions=)


def model_with_helper(weights, target):
    return {{uniform(0, 1)}} + helper_uses_data_local()


def test_functions_see_data_locals_as_under_hyperas():
    trials = Trials()
    optim.minimize(model_with_helper, data, tpe.suggest, 2, trials, functions=[helper_uses_data_local], **QUIET)
    assert all(30 <= loss <= 31 for loss in trials.losses())


def test_runs_leave_nothing_behind_unless_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    optim.minimize(model, data, tpe.suggest, 2, Trials(), notebook_name="ignored", **QUIET)
    assert list(tmp_path.iterdir()) == []
    optim.minimize(model, data, tpe.suggest, 2, Trials(), keep_temp=True, **QUIET)
    kept = [p for p in tmp_path.iterdir()]
    assert len(kept) == 1 and str(kept[0]) in capsys.readouterr().err
    run_dir = next(kept[0].iterdir())
    assert (run_dir / "study.journal").exists() and (run_dir / "logs").is_dir()


def test_directory_keeps_each_call_as_a_fresh_study(tmp_path):
    optim.minimize(model, data, tpe.suggest, 2, Trials(), directory=tmp_path, **QUIET)
    optim.minimize(model, data, tpe.suggest, 2, Trials(), directory=tmp_path, **QUIET)
    run_dirs = sorted(p.name for p in tmp_path.iterdir())
    assert len(run_dirs) == 2 and all(name.startswith("test_hyperas_api.model-") for name in run_dirs)
    for run_dir in run_dirs:
        study = optuna.load_study(
            study_name=run_dir,
            storage=optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(str(Path(tmp_path, run_dir, "study.journal")))
            ),
        )
        assert len(study.trials) == 2


def test_best_models_are_the_lowest_losses_best_first():
    trials = Trials()
    models = optim.best_models(3, model, data, rand.suggest, 6, trials, **QUIET)
    best_three = sorted(trials.results, key=lambda r: r['loss'])[:3]
    assert models == [r['model'] for r in best_three]
    assert sum('model' in r for r in trials.results) == 3


def test_trials_must_be_a_trials_object():
    with pytest.raises(TypeError, match="Trials()"):
        optim.minimize(model, data, tpe.suggest, 2, [], **QUIET)


# -- voting --------------------------------------------------------------------------------------------------------


class _Fixed:
    def __init__(self, probabilities):
        self.probabilities = np.asarray(probabilities, dtype=float)

    def predict(self, x, batch_size=None, verbose=0):
        return self.probabilities


def test_hard_voting_is_a_real_majority_not_the_largest_label():
    # Two models say class 0, one says class 2: Hyperas' version answered 2 (the largest label voted for).
    models = [_Fixed([[0.8, 0.1, 0.1]]), _Fixed([[0.6, 0.3, 0.1]]), _Fixed([[0.1, 0.1, 0.8]])]
    assert VotingModel(models).predict(None).tolist() == [0]
    assert VotingModel(models, weights=[1, 1, 3]).predict(None).tolist() == [2]


def test_soft_voting_and_binary_outputs():
    models = [_Fixed([[0.9], [0.2]]), _Fixed([[0.4], [0.45]])]
    assert VotingModel(models, voting="soft").predict(None).tolist() == [1, 0]
    with pytest.raises(ValueError, match="hard' or 'soft"):
        VotingModel(models, voting="mean")
    with pytest.raises(ValueError, match="one weight per model"):
        VotingModel(models, weights=[1])


# -- data(): locals through the profile hook ---------------------------------------------------------------------


def test_data_locals_are_read_under_a_running_profiler():
    import cProfile
    import profile
    import sys

    from hyperbrace.hyperas._data import run_data

    def make_data():
        hidden = 41
        return hidden + 1

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        run = run_data(make_data, None)
        assert sys.getprofile() is profiler  # cProfile was paused, not removed
    finally:
        profiler.disable()
    assert run.value == 42 and run.locals == {"hidden": 41}

    python_profiler = profile.Profile()
    sys.setprofile(python_profiler.dispatcher)
    try:
        assert run_data(make_data, None).locals == {"hidden": 41}
        assert sys.getprofile() == python_profiler.dispatcher
    finally:
        sys.setprofile(None)


# -- what Hyperas' text copying broke ---------------------------------------------------------------------------------

import json as serialized, math as maths  # noqa: E401,E402 (`import a as b, c as d`: Hyperas mangled it)


def model_with_aliases_and_an_inner_function():
    def scaled(value):
        return maths.sqrt(value) * {{uniform(1, 2)}}  # a template inside an inner function

    return float(serialized.loads(serialized.dumps(scaled(4.0))))


def test_aliased_imports_and_inner_functions():
    trials = Trials()
    best_run, _ = optim.minimize(model_with_aliases_and_an_inner_function, None, tpe.suggest, 2, trials, **QUIET)
    assert list(best_run) == ['uniform']  # no word before the template: named after its distribution
    assert all(2 <= loss <= 4 for loss in trials.losses())


def test_return_space_holds_templates_no_trial_of_the_call_reached_as_written():
    trials = Trials()
    optim.minimize(conditional_model, None, rand.suggest, 8, trials, **QUIET)
    # the trials already hold max_evals trials: this call runs none, and answers from them
    best_run, _, space = optim.minimize(conditional_model, None, rand.suggest, 8, trials, return_space=True, **QUIET)
    assert best_run == trials.argmin
    assert list(space) == ['branch', 'extra'] and repr(space['extra']) == 'uniform(0, 1)'
