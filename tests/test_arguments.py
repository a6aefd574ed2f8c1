"""Every argument of minimize() and evaluate() is checked before anything runs or is created, and the message names
the argument and what it takes. About 2 s."""

from __future__ import annotations

import pytest

from hyperbrace import evaluate, maximize, minimize, uniform  # noqa: F401  (uniform: the template's)
from hyperbrace.cli import main


def quadratic():
    x = {{uniform(-1, 1)}}
    return x * x


def never_called():
    raise AssertionError("data() ran although an argument was wrong")


BAD = [
    ({"max_evals": True}, "max_evals=True: .*positive integer.*not a bool"),
    ({"max_evals": 0}, "max_evals=0: .*positive integer"),
    ({"max_evals": 2.5}, "max_evals=2.5: .*positive integer"),
    ({"n_jobs": 0}, "n_jobs=0: give the number of worker processes, a positive integer"),
    ({"keep_models": -1}, "keep_models=-1: give how many of the best models to keep, an integer >= 0"),
    ({"retries": -1}, "retries=-1: .*an integer >= 0"),
    ({"timeout": -5}, "timeout=-5: give a positive number of seconds, or None"),
    ({"timeout": "10"}, "timeout='10': give a positive number of seconds"),
    ({"gpus": "abc"}, "gpus='abc': 'abc' is not a GPU id; give \"all\", a GPU number such as 0"),
    ({"gpus": [0, -1]}, "gpus=\\[0, -1\\]: -1 is not a GPU id"),
    ({"seed": "abc"}, "seed='abc': give an integer from 0 to 4294967295, or None"),
    ({"seed": -1}, "seed=-1: give an integer from 0"),
    ({"storage": "garbage://x"}, "storage='garbage://x': 'garbage' is not a database .*sqlite:///study.db"),
    ({"storage": 42}, "storage=42: give a database URL"),
    ({"algo": "tpee"}, "algo='tpee' is not a known search algorithm; give one of 'auto', 'tpe', 'random'"),
    ({"prune": "sometimes"}, "prune='sometimes' is not a known pruner; give one of 'asha'"),
    ({"study_name": ""}, "study_name='': give a non-empty string"),
    ({"show_progress": "yes"}, "show_progress='yes': give True or False"),
    ({"data_args": 3}, "data_args=3: give a tuple or list"),
    ({"load_options": ["x"]}, "load_options=\\['x'\\]: give a dict"),
]


@pytest.mark.parametrize("bad, message", BAD, ids=[next(iter(b)) + "=" + repr(next(iter(b.values()))) for b, _ in BAD])
def test_a_bad_argument_is_named_before_anything_runs(tmp_path, bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        minimize(quadratic, never_called, **{"max_evals": 3, "directory": tmp_path / "runs", **bad})
    assert not (tmp_path / "runs").exists()  # nothing created


def test_a_misspelt_keyword_names_the_one_meant(tmp_path):
    with pytest.raises(TypeError, match=r"minimize\(\) got an unexpected keyword argument 'max_eval'; did you mean "
                                        r"max_evals=\.\.\.\?"):
        minimize(quadratic, never_called, max_eval=3, directory=tmp_path / "runs")
    with pytest.raises(TypeError, match=r"maximize\(\) .* 'prune_of'; did you mean prune_on=\.\.\.\?"):
        maximize(quadratic, never_called, prune_of="val_auc", directory=tmp_path / "runs")
    with pytest.raises(TypeError, match=r"'metrik'; did you mean metric="):
        maximize(quadratic, never_called, metrik="accuracy", directory=tmp_path / "runs")
    with pytest.raises(TypeError, match=r"'zzz'; it takes: model, params, data, data_args$"):
        evaluate(quadratic, {"x": 0.5}, zzz=1)
    assert not (tmp_path / "runs").exists()  # nothing created


def test_evaluate_checks_its_arguments():
    with pytest.raises(TypeError, match="params=\\[\\('x', 0.5\\)\\]: give a dict of template values"):
        evaluate(quadratic, [("x", 0.5)])
    with pytest.raises(TypeError, match="data=3: give a function \\(or None\\)"):
        evaluate(quadratic, {"x": 0.5}, data=3)
    assert evaluate(quadratic, {"x": 0.5}) == 0.25


def test_good_arguments_pass(tmp_path):
    result = minimize(quadratic, max_evals=2, directory=tmp_path, seed=0, timeout=60.0, gpus=None, retries=0,
                      keep_models=0, show_progress=False)
    assert len(result.trials) == 2


def test_show_never_creates_a_database(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["show", "--storage", "sqlite:///typo.db"])
    assert exit_.value.code == 2 and "typo.db" in capsys.readouterr().err
    assert not (tmp_path / "typo.db").exists()
