"""Mistakes caught before (or at) the first trial, messages that name the user's line, and the visible search space
(issue 9, parts 3 to 5). Every search is a real one on a journal file in tmp_path."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.storages.journal import JournalFileBackend

from hyperbrace import TemplateError, TrialFailedError, minimize
from hyperbrace.cli import main as cli
from hyperbrace.preflight import ModelArgumentsError
from hyperbrace.template import compile_model


def trials_in(tmp_path):
    journals = list(tmp_path.glob("*/study.journal"))
    if not journals:
        return []
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journals[0])))
    return optuna.load_study(study_name=None, storage=storage).trials


def search(fn, tmp_path, data=None, **kwargs):
    kwargs = {"max_evals": 4, "directory": tmp_path, "show_progress": False, "seed": 0, **kwargs}
    return minimize(fn, data, **kwargs)


# -- the model's parameters against data() -------------------------------------------------------------------------


def two_values():
    x_train, y_train = [1, 2], [3, 4]
    return x_train, y_train


def computed_two_values():
    return tuple([[1, 2], [3, 4]])  # the count is known only once data() has run


def four_parameters(x_train, y_train, x_val, y_val):
    return {{uniform(0, 1)}}


@pytest.mark.parametrize("data", [two_values, computed_two_values])
def test_data_returning_fewer_values_than_the_model_takes_stops_before_any_trial(tmp_path, data):
    with pytest.raises(ModelArgumentsError) as info:
        search(four_parameters, tmp_path, data)
    message = str(info.value)
    assert f'File "{__file__}", line {four_parameters.__code__.co_firstlineno}, in four_parameters' in message
    assert "2 values (a tuple)" in message and "missing a required argument: 'x_val'" in message
    assert f'data() (File "{__file__}", line {data.__code__.co_firstlineno})' in message
    assert "`return x_train, y_train, x_val, y_val`" in message
    assert trials_in(tmp_path) == []  # zero trials run


def test_a_model_that_takes_arguments_without_a_data_function_stops_before_any_trial(tmp_path):
    with pytest.raises(ModelArgumentsError) as info:
        search(four_parameters, tmp_path)
    assert "no data function" in str(info.value) and "data=" in str(info.value)
    assert info.value.lineno == four_parameters.__code__.co_firstlineno
    assert trials_in(tmp_path) == []


def dict_data():
    return {"x_train": 1, "y_tain": 2}


def keyword_model(x_train, y_train):
    return {{uniform(0, 1)}} + x_train + y_train


def test_data_returning_a_dict_with_other_names_stops_before_any_trial(tmp_path):
    with pytest.raises(ModelArgumentsError, match=r"a dict with keys \['x_train', 'y_tain'\]"):
        search(keyword_model, tmp_path, dict_data)
    assert trials_in(tmp_path) == []


# -- errors no configuration causes stop at the first trial ---------------------------------------------------------


def misspelt_name():
    x = {{uniform(0, 1)}}
    return x + undefined_learning_rate  # noqa: F821


def missing_module():
    import hyperbrace_no_such_module  # noqa: F401

    return {{uniform(0, 1)}}


@pytest.mark.parametrize("model, error, line", [(misspelt_name, "NameError", 2), (missing_module, "ModuleNotFoundError", 1)])
def test_name_and_import_errors_stop_the_search_after_one_trial(tmp_path, model, error, line):
    with pytest.raises(TrialFailedError) as info:
        search(model, tmp_path, max_evals=10)
    message = str(info.value)
    assert "first trial" in message and error in message
    assert f'File "{__file__}", line {model.__code__.co_firstlineno + line}, in {model.__name__}' in message
    assert len(trials_in(tmp_path)) == 1


def fails_for_some_configurations():
    if {{choice(["a", "b"])}} == "a":
        raise ValueError("diverged")
    return 1.0


def test_configuration_dependent_failures_keep_the_streak_rule(tmp_path):
    result = search(fails_for_some_configurations, tmp_path, max_evals=8, algo="random")
    assert len(result.trials) == 8  # failures never stopped the search


# -- messages that name the line and say what to write --------------------------------------------------------------


def bad_status():
    x = {{uniform(0, 1)}}
    return {"loss": x, "status": "success"}


def array_loss():
    x = {{uniform(0, 1)}}
    return np.array([x, x, x])


def one_element_array_loss():
    x = {{uniform(0, 1)}}
    return {"loss": np.array([x])}


def test_a_status_that_is_not_one_lists_the_valid_ones(tmp_path):
    with pytest.raises(TrialFailedError) as info:
        search(bad_status, tmp_path)
    message = str(info.value)
    assert f'File "{__file__}", line {bad_status.__code__.co_firstlineno + 2}, in bad_status' in message
    assert "'status': 'success'" in message and "STATUS_OK (the string 'ok')" in message and "STATUS_FAIL" in message


def test_an_array_as_the_loss_says_to_reduce_it(tmp_path):
    with pytest.raises(TrialFailedError) as info:
        search(array_loss, tmp_path)
    message = str(info.value)
    assert f'File "{__file__}", line {array_loss.__code__.co_firstlineno + 2}, in array_loss' in message
    assert "array of shape (3,) (numpy.ndarray)" in message and "float(loss.mean())" in message


def test_a_one_element_array_is_a_loss(tmp_path):
    result = search(one_element_array_loss, tmp_path)
    assert math.isclose(result.best_loss, result.best_run["x"])


def misspelt_distribution():
    return {{choise([1, 2])}}


def misspelt_keyword():
    return {{choice([1, 2], nme="width")}}


def test_did_you_mean_for_distributions_and_keywords():
    with pytest.raises(TemplateError, match=r"did you mean choice\? Write \{\{choice\(\[1, 2\]\)\}\}"):
        compile_model(misspelt_distribution)
    with pytest.raises(TemplateError, match=r"did you mean name=\?"):
        compile_model(misspelt_keyword)


# -- the search space, visible ---------------------------------------------------------------------------------------


def readme_loop(n_layers=None):
    total = 0
    for i in range({{choice([1, 2, 3])}}):
        total += {{choice([8, 16], name=f"units_{i}")}}
    if {{choice(["adam", "sgd"])}} == "adam":
        total += 1
    lr = {{loguniform(1e-4, 1e-2)}}
    return total * lr


def test_the_search_space_is_shown_at_the_start_stored_and_printed_by_the_cli(tmp_path, capsys):
    result = search(readme_loop, tmp_path, max_evals=2, show_progress=True)
    err = capsys.readouterr().err
    line = readme_loop.__code__.co_firstlineno
    assert "Search space: 4 parameters" in err
    rows = [row.split() for row in err.splitlines()]
    assert ["range*", "choice([1,", "2,", "3])", f"tests/test_preflight.py:{line + 2}"] in rows
    assert ['f"units_{i}"', "choice([8,", "16])", f"tests/test_preflight.py:{line + 3}"] in rows
    assert ["choice*", 'choice(["adam",', '"sgd"])', f"tests/test_preflight.py:{line + 4}"] in rows
    assert 'write name="..." in the template' in err
    assert [(e["name"], e["weak"]) for e in result.search_space] == [
        ("range", True), ('f"units_{i}"', False), ("choice", True), ("lr", False),
    ]
    assert str(result.search_space).startswith("Search space: 4 parameters")
    assert cli(["show", str(result.directory), "--space"]) == 0
    assert "range*" in capsys.readouterr().out
