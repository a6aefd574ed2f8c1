"""The error catalogue: every mistake is reported with the user's file, line and template text, and failing
trials are data (recorded with their traceback) rather than crashes.

Each broken model function below has its template (or its failing statement) on the first line of its body,
so the line an error must name is ``fn.__code__.co_firstlineno + 1``.
"""

from __future__ import annotations

import math

import optuna
import pytest

from hyperbrace import STATUS_FAIL, TemplateError, TrialFailedError, minimize
from hyperbrace.template import TemplateSourceError, compile_model


def body_line(fn) -> int:
    return fn.__code__.co_firstlineno + 1


def assert_points_at(error: BaseException, fn, text: str) -> None:
    """The message names this file, the template's line and the template as written."""
    message = str(error)
    assert f'File "{__file__}", line {body_line(fn)}' in message, message
    assert text in message, message
    if isinstance(error, TemplateError):
        assert (error.filename, error.lineno, error.text) == (__file__, body_line(fn), text)


def search(fn, tmp_path, **options):
    options = {"max_evals": 6, "directory": tmp_path, "show_progress": False, "seed": 0, **options}
    return minimize(fn, **options)


def trials(tmp_path, fn) -> list[optuna.trial.FrozenTrial]:
    """The trials recorded in the run directory of ``fn``'s search."""
    from optuna.storages.journal import JournalFileBackend

    [journal] = tmp_path.glob("*/study.journal")
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    return optuna.load_study(study_name=None, storage=storage).trials


# -- template mistakes, found before any trial runs ----------------------------------------------------------------


def unknown_distribution():
    return {{gaussian(0, 1)}}


def not_a_call():
    return {{0.5}}


def wrong_arguments():
    return {{uniform(0)}}


def unknown_keyword():
    return {{choice([1, 2], weights=[1, 2])}}


def low_above_high():
    return {{uniform(1, 0)}}


def empty_choice():
    return {{choice([])}}


def zero_q():
    return {{quniform(0, 10, 0)}}


def negative_q():
    return {{qnormal(0, 1, -0.5)}}


def exponent_bounds():
    return {{loguniform(-10, 0)}}


def zero_log_bound():
    return {{loguniform(0, 1)}}


def zero_sigma():
    return {{normal(0, 0)}}


def empty_randint():
    return {{randint(3, 3)}}


CATALOGUE = [
    (unknown_distribution, "{{gaussian(0, 1)}}", ["unknown distribution 'gaussian'", "known: choice, pchoice"]),
    (not_a_call, "{{0.5}}", ["a template must hold one distribution call", "{{uniform(0, 1)}}"]),
    (wrong_arguments, "{{uniform(0)}}", ["wrong arguments for uniform", "missing a required argument: 'high'",
                                        "It takes uniform(low: 'float', high: 'float')"]),
    (unknown_keyword, "{{choice([1, 2], weights=[1, 2])}}", ["wrong arguments for choice", "'weights'"]),
    (low_above_high, "{{uniform(1, 0)}}", ["low (1) is greater than high (0)"]),
    (empty_choice, "{{choice([])}}", ["list of options is empty"]),
    (zero_q, "{{quniform(0, 10, 0)}}", ["q must be > 0"]),
    (negative_q, "{{qnormal(0, 1, -0.5)}}", ["q must be > 0"]),
    (exponent_bounds, "{{loguniform(-10, 0)}}", ["real bounds, both > 0", "hyperopt's exponent bounds",
                                                "loguniform(4.54e-05, 1)", "hyperbrace.hyperas.distributions"]),
    (zero_log_bound, "{{loguniform(0, 1)}}", ["real bounds, both > 0"]),
    (zero_sigma, "{{normal(0, 0)}}", ["sigma must be > 0"]),
    (empty_randint, "{{randint(3, 3)}}", ["high must be greater than low"]),
]


@pytest.mark.parametrize("fn, text, phrases", CATALOGUE, ids=[fn.__name__ for fn, _, _ in CATALOGUE])
def test_template_mistakes_are_reported_at_compile_time(fn, text, phrases):
    with pytest.raises(TemplateError) as info:
        compile_model(fn)
    assert_points_at(info.value, fn, text)
    for phrase in phrases:
        assert phrase in str(info.value)


def test_template_mistakes_stop_minimize_before_any_trial(tmp_path):
    with pytest.raises(TemplateError) as info:
        search(low_above_high, tmp_path)
    assert_points_at(info.value, low_above_high, "{{uniform(1, 0)}}")
    assert not list(tmp_path.glob("*/study.journal"))  # nothing was started


HIGH = 0  # known only when the trial runs: the mistake shows at the first trial


def bounds_known_at_run_time():
    return {{uniform(1, HIGH)}}


def test_bounds_known_only_at_run_time_are_checked_at_the_first_trial(tmp_path):
    with pytest.raises(TemplateError) as info:
        search(bounds_known_at_run_time, tmp_path)
    assert_points_at(info.value, bounds_known_at_run_time, "{{uniform(1, HIGH)}}")
    assert "low (1) is greater than high (0)" in str(info.value)
    [trial] = trials(tmp_path, bounds_known_at_run_time)  # the one trial it took is closed, not left RUNNING
    assert trial.state == optuna.trial.TrialState.FAIL


def duplicate_names_with_different_distributions(rarely=False):
    rate = {{uniform(0, 1, name="rate")}}
    if rarely:  # the clash is found before any trial, even in a branch that a search may seldom take
        rate = {{choice([1, 2], name="rate")}}
    return rate


def test_duplicate_explicit_names_with_different_distributions_are_found_before_any_trial():
    fn = duplicate_names_with_different_distributions
    with pytest.raises(TemplateError) as info:
        compile_model(fn)
    message = str(info.value)
    assert f'File "{__file__}", line {body_line(fn) + 2}' in message
    assert '{{choice([1, 2], name="rate")}}' in message
    assert f"the name 'rate' is also used by {{{{uniform(0, 1, name=\"rate\")}}}} (line {body_line(fn)})" in message
    assert "different distribution (uniform(0, 1) vs choice([1, 2]))" in message


def same_names_with_same_distributions():
    return {{choice([1, 2], name="width")}} * {{choice([1, 2], name="width")}}


def test_duplicate_explicit_names_with_the_same_distribution_share_a_value():
    assert [site.name for site in compile_model(same_names_with_same_distributions).sites] == ["width", "width"]


UPPER = 5


def duplicate_names_known_at_run_time():
    return {{uniform(0, 1, name="rate")}} + {{uniform(0, UPPER, name="rate")}}


def test_duplicate_names_with_bounds_known_at_run_time_fail_at_the_first_trial(tmp_path):
    fn = duplicate_names_known_at_run_time
    with pytest.raises(TemplateError) as info:
        search(fn, tmp_path)
    message = str(info.value)
    assert f'File "{__file__}", line {body_line(fn)}' in message and '{{uniform(0, UPPER, name="rate")}}' in message
    assert "different distribution (uniform(0, 1) vs uniform(0, 5))" in message


def computed_name_is_not_a_string():
    return {{choice([1, 2], name=len("ab"))}}


def test_name_must_give_a_string(tmp_path):
    with pytest.raises(TemplateError) as info:
        search(computed_name_is_not_a_string, tmp_path)
    assert_points_at(info.value, computed_name_is_not_a_string, '{{choice([1, 2], name=len("ab"))}}')
    assert "name= must give a non-empty string, it gave 2" in str(info.value)


def test_source_unavailable_says_why_and_what_to_do():
    namespace: dict = {}
    exec("def create_model():\n    return {{uniform(0, 1)}}\n", namespace)
    with pytest.raises(TemplateSourceError) as info:
        compile_model(namespace["create_model"])
    message = str(info.value)
    assert "cannot read the source of create_model()" in message
    assert "exec()" in message and "Define it in a .py file" in message and "Jupyter" in message


def test_lambda_is_refused_with_the_fix():
    with pytest.raises(TemplateSourceError) as info:
        compile_model(lambda: 0)
    assert "not a lambda" in str(info.value) and "def create_model" in str(info.value)


def test_not_a_function_is_refused():
    with pytest.raises(TypeError) as info:
        compile_model(print)
    assert "defined with `def`" in str(info.value)


# -- failing trials -----------------------------------------------------------------------------------------------


def always_raises():
    width = {{choice([1, 2])}}
    raise ValueError(f"the input needs 3 channels, not {width > 5}")  # the same message in every trial


def test_first_trials_failing_alike_stop_the_search_naming_the_users_line(tmp_path):
    with pytest.raises(TrialFailedError) as info:
        search(always_raises, tmp_path, max_evals=20)
    message = str(info.value)
    assert "the first 3 trials of always_raises() all failed with the same error" in message
    assert f'File "{__file__}", line {body_line(always_raises) + 1}, in always_raises' in message
    assert "ValueError: the input needs 3 channels, not False" in message
    assert isinstance(info.value.__cause__, ValueError)
    recorded = trials(tmp_path, always_raises)
    assert [t.state.name for t in recorded] == ["FAIL"] * 3  # stopped after 3 of 20, every trial recorded


def returns_none():
    {{uniform(0, 1)}}


def test_model_returning_none_gets_a_clear_message(tmp_path):
    with pytest.raises(TrialFailedError) as info:
        search(returns_none, tmp_path)
    message = str(info.value)
    assert "returns_none() returned None (is its `return` missing?)" in message
    assert f'File "{__file__}", line {returns_none.__code__.co_firstlineno}, in returns_none' in message


def returns_a_dict_without_loss():
    return {"accuracy": {{uniform(0, 1)}}}


def returns_a_string():
    return "loss: %d" % {{choice([1])}}


@pytest.mark.parametrize(
    "fn, phrase",
    [
        (returns_a_dict_without_loss, "returned a dict without 'loss' (keys: ['accuracy'])"),
        (returns_a_string, "returns_a_string() returned 'loss: 1'; return the loss (a number) or a dict"),
    ],
)
def test_model_returning_something_that_is_not_a_loss(tmp_path, fn, phrase):
    with pytest.raises(TrialFailedError) as info:
        search(fn, tmp_path)
    assert phrase in str(info.value)


def fails_in_every_way(mode=None):
    mode = {{choice(["ok", "nan", "inf", "status", "raise"])}}
    if mode == "nan":
        return math.nan
    if mode == "inf":
        return {"loss": math.inf}
    if mode == "status":
        return {"loss": 1.0, "status": STATUS_FAIL}
    if mode == "raise":
        raise RuntimeError("the model fell over")
    return {"loss": 0.5, "status": "ok", "note": "fine"}


def test_failed_trials_are_recorded_and_the_search_goes_on(tmp_path):
    result = search(fails_in_every_way, tmp_path, algo="grid", max_evals=5)
    by_mode = {t.params["mode"]: t for t in result.trials}
    assert set(by_mode) == {"ok", "nan", "inf", "status", "raise"}  # every trial ran; nothing stopped the search
    assert by_mode["ok"].state == "COMPLETE" and by_mode["ok"].loss == 0.5
    for mode in ("nan", "inf", "status", "raise"):
        assert by_mode[mode].state == "FAIL" and by_mode[mode].loss is None
    line = fails_in_every_way.__code__.co_firstlineno
    assert by_mode["nan"].error.startswith(f'failed: the loss is nan (File "{__file__}", line {line + 3}: `return math.nan`)')
    assert by_mode["inf"].error.startswith(f'failed: the loss is inf (File "{__file__}", line {line + 5}: `return {{"loss": math.inf}}`)')
    assert "STATUS_FAIL" in by_mode["nan"].error and "learning-rate" in by_mode["nan"].error
    assert by_mode["status"].error == "failed: status 'fail'"
    error = by_mode["raise"].error
    assert f'File "{__file__}", line' in error and 'raise RuntimeError("the model fell over")' in error
    assert error.endswith("RuntimeError: the model fell over")
    # The whole traceback is in the trial's log.
    number = next(t.number for t in result.trials if t.params["mode"] == "raise")
    log = (result.directory / "logs" / f"trial-{number:05d}.log").read_text()
    assert "Traceback (most recent call last)" in log and "RuntimeError: the model fell over" in log
    assert result.best_run == {"mode": "ok"} and result.best_loss == 0.5


def fails_sometimes():
    x = {{uniform(0, 1)}}
    if x > 0.5:
        raise ArithmeticError("too big")
    return x


def test_failures_after_a_success_never_stop_the_search(tmp_path):
    result = search(fails_sometimes, tmp_path, algo="random", max_evals=12, seed=3)
    states = [t.state for t in result.trials]
    assert len(states) == 12 and "COMPLETE" in states and states.count("FAIL") >= 3
    assert result.best_loss == min(t.loss for t in result.trials if t.state == "COMPLETE")


def fails_differently():
    raise KeyError({{uniformint(0, 1000)}})


def test_first_trials_failing_differently_do_not_stop_the_search(tmp_path):
    result = search(fails_differently, tmp_path, algo="random", max_evals=5)
    assert [t.state for t in result.trials] == ["FAIL"] * 5
    assert result.best_run == {} and result.best_model is None and result.best_loss is None
