"""Changing the space of a resumed study: every kind of edit goes on as a new version, says what changed, and
reuses the earlier trials that fit (given to the sampler, never run again, never counted). Plain objectives, no
framework: the whole file runs in about 15 s."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hyperbrace import minimize
from hyperbrace.budget import REUSED_ATTR, counted_trials
from hyperbrace.cli import main as cli
from hyperbrace.versions import SpaceChanged, SpaceChangedError, study_versions
from hyperbrace.versions.reuse import OUTSIDE, raw_for


def run(fn, tmp_path: Path, max_evals: int = 12, **options):
    options = {"directory": tmp_path, "study_name": "s", "show_progress": False, "seed": 0, **options}
    return minimize(fn, max_evals=max_evals, **options)


def changed(fn, tmp_path: Path, max_evals: int = 6, **options):
    """Run ``fn`` on the study, expecting it to say that the space changed; returns (result, message)."""
    with pytest.warns(SpaceChanged) as caught:
        result = run(fn, tmp_path, max_evals, **options)
    return result, str(caught[0].message)


def reused(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if REUSED_ATTR in t.user_attrs]


def snapshot(study: optuna.Study) -> list[tuple]:
    return [(t.number, t.state, t.value, t.params, t.user_attrs) for t in study.trials]


def load(tmp_path: Path, name: str) -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "s" / "study.journal")))
    return optuna.load_study(study_name=name, storage=storage)


# -- the spaces: one function per edit, all under the study name "s" --------------------------------------------------

def base():
    units = {{choice([32, 64, 128])}}
    rate = {{uniform(0, 1)}}
    return {"loss": abs(units - 64) / 64 + (rate - 0.3) ** 2, "model": {"units": units, "rate": rate}}


def base_reformatted():  # moved and re-spaced, same distributions: the same space

    units = {{ choice( [32, 64, 128] ) }}
    rate = {{uniform(0, 1)}}
    return {"loss": abs(units - 64) / 64 + (rate - 0.3) ** 2, "model": {"units": units, "rate": rate}}


def options_changed():
    units = {{choice([16, 64, 256])}}
    rate = {{uniform(0, 1)}}
    return abs(units - 64) / 64 + (rate - 0.3) ** 2


def range_narrowed():
    units = {{choice([32, 64, 128])}}
    rate = {{uniform(0.1, 0.6)}}
    return abs(units - 64) / 64 + (rate - 0.3) ** 2


def distribution_changed():
    units = {{choice([32, 64, 128])}}
    rate = {{loguniform(0.01, 1)}}
    return abs(units - 64) / 64 + (rate - 0.3) ** 2


def template_added():
    units = {{choice([32, 64, 128])}}
    rate = {{uniform(0, 1)}}
    decay = {{uniform(0, 1)}}
    return abs(units - 64) / 64 + (rate - 0.3) ** 2 + decay


def template_removed():
    rate = {{uniform(0, 1)}}
    return {"loss": (rate - 0.3) ** 2, "model": {"rate": rate}}


def test_an_unchanged_space_resumes_its_study(tmp_path):
    run(base, tmp_path, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpaceChanged)
        result = run(base_reformatted, tmp_path, 6)
    assert result.study.study_name == "s" and len(result.trials) == 6 and len(result.versions) == 1


def test_changed_options_start_a_new_version_that_reuses_the_fitting_trials(tmp_path):
    first = run(base, tmp_path)
    before = snapshot(load(tmp_path, "s"))
    result, message = changed(options_changed, tmp_path, 5)
    assert "units: options changed, choice([32, 64, 128]) -> choice([16, 64, 256])" in message
    assert "rate" not in message.split("Going on")[0]  # unchanged names are not listed
    assert result.study.study_name == "s@v2" and "version 2" in message
    # What fits: trials with units=64 (the one option kept), every rate value.
    fitting = [t for t in first.study.trials if t.params["units"] == 64]
    copies = reused(result.study)
    assert fitting and sorted(t.user_attrs[REUSED_ATTR]["trial"] for t in copies) == [t.number for t in fitting]
    assert f"{len(fitting)} of 12 earlier completed trials fit" in message
    for copy in copies:
        original = first.study.trials[copy.user_attrs[REUSED_ATTR]["trial"]]
        assert copy.state == TrialState.COMPLETE and copy.value == original.value and copy.params == original.params
        assert copy.user_attrs[REUSED_ATTR] == {"study": "s", "version": 1, "trial": original.number, "complete": True}
        assert copy.distributions["units"].choices == (16, 64, 256)  # the new space's: Optuna can mix them
    # max_evals counts the new version's own trials only, and they ran in the new space.
    assert len(result.trials) == 5 and counted_trials(result.study) == 5
    assert len(result.study.trials) == 5 + len(copies)
    assert all(t.params["units"] in (16, 64, 256) for t in result.trials)
    assert result.best_run["units"] in (16, 64, 256)
    assert snapshot(load(tmp_path, "s")) == before  # the old version is untouched
    # Run again: the new version resumes; nothing runs and nothing is reused twice.
    again = run(options_changed, tmp_path, 5)
    assert again.study.study_name == "s@v2" and len(again.study.trials) == 5 + len(copies)


def test_a_narrowed_range_reuses_the_trials_inside_it(tmp_path):
    first = run(base, tmp_path)
    result, message = changed(range_narrowed, tmp_path, 4)
    assert "rate: range changed, uniform(0, 1) -> uniform(0.1, 0.6)" in message
    inside = [t for t in first.study.trials if 0.1 <= t.params["rate"] <= 0.6]
    assert 0 < len(inside) < 12
    copies = reused(result.study)
    assert sorted(t.user_attrs[REUSED_ATTR]["trial"] for t in copies) == [t.number for t in inside]
    assert all(0.1 <= t.params["rate"] <= 0.6 for t in result.study.trials)
    assert all(t.distributions["rate"] == optuna.distributions.FloatDistribution(0.1, 0.6) for t in copies)
    # The best of the version may be a reused trial: it is a whole configuration of the new space, and its
    # model is the one saved by the earlier version.
    best_reused = min(copies, key=lambda t: t.value)
    if result.best_trial.number == best_reused.number:
        assert result.best_model == {"units": result.best_run["units"], "rate": result.best_run["rate"]}
        assert result.best_trial.user_attrs["hb.model"].startswith("models/")  # version 1's folder


def test_another_distribution_is_a_new_parameter_for_the_reused_trials(tmp_path):
    first = run(base, tmp_path)
    result, message = changed(distribution_changed, tmp_path, 4)
    assert "rate: distribution changed, uniform(0, 1) -> loguniform(0.01, 1)" in message
    copies = reused(result.study)
    assert len(copies) == 12  # every trial fits once rate is dropped
    assert all(set(t.params) == {"units"} and not t.user_attrs[REUSED_ATTR]["complete"] for t in copies)
    # A partial trial informs the sampler but is never the best run: best_run has every parameter of the space.
    assert not result.best_trial.user_attrs.get(REUSED_ATTR) and set(result.best_run) == {"units", "rate"}
    assert first.best_loss is not None


def test_an_added_template_makes_reused_trials_partial(tmp_path):
    run(base, tmp_path)
    result, message = changed(template_added, tmp_path, 4)
    assert "decay: added, uniform(0, 1)" in message
    copies = reused(result.study)
    assert len(copies) == 12 and all("decay" not in t.params for t in copies)
    assert all(t.user_attrs[REUSED_ATTR]["complete"] is False for t in copies)
    assert set(result.best_run) == {"units", "rate", "decay"} and len(result.trials) == 4


def test_a_removed_template_is_dropped_and_a_reused_best_brings_its_model(tmp_path):
    first = run(base, tmp_path)
    result, message = changed(template_removed, tmp_path, 2)
    assert "units: removed (was choice([32, 64, 128]))" in message
    copies = reused(result.study)
    assert len(copies) == 12 and all(set(t.params) == {"rate"} and t.user_attrs[REUSED_ATTR]["complete"]
                                     for t in copies)
    best = result.best_trial
    assert best.value == min(t.value for t in result.study.trials)
    if REUSED_ATTR in best.user_attrs:  # its model file is version 1's; loading it gives that trial's model
        original = first.study.trials[best.user_attrs[REUSED_ATTR]["trial"]]
        assert result.best_model == {"units": original.params["units"], "rate": original.params["rate"]}
    assert set(result.best_run) == {"rate"}


def wide():
    x, y, z = {{uniform(-10, 10)}}, {{uniform(-10, 10)}}, {{uniform(-10, 10)}}
    return (x - 1) ** 2 + (y + 2) ** 2 + (z - 3) ** 2


def narrow():
    x, y, z = {{uniform(-5, 5)}}, {{uniform(-5, 5)}}, {{uniform(-5, 5)}}
    return (x - 1) ** 2 + (y + 2) ** 2 + (z - 3) ** 2


def test_reused_trials_inform_the_sampler(tmp_path):
    """The warm version's first trials are already good where a cold search's are random (TPE starts with 10
    random trials; the reused ones take their place). Seeds 0-3 measured: 3-5x lower mean loss."""
    run(wide, tmp_path / "warm", 40, algo="tpe")
    warm, _ = changed(narrow, tmp_path / "warm", 6, algo="tpe")
    cold = run(narrow, tmp_path / "cold", 6, algo="tpe")
    mean_loss = lambda result: sum(t.loss for t in result.trials) / len(result.trials)  # noqa: E731
    assert len(reused(warm.study)) > 10 and len(warm.trials) == 6
    assert mean_loss(warm) < mean_loss(cold) / 2, (mean_loss(warm), mean_loss(cold))


def test_fresh_starts_a_new_version_with_nothing_reused(tmp_path):
    run(base, tmp_path)
    result, message = changed(range_narrowed, tmp_path, 3, on_space_change="fresh")
    assert result.study.study_name == "s@v2" and not reused(result.study) and "nothing reused" in message
    assert [v.reused for v in result.versions] == [0, 0]


def test_error_stops_before_anything_runs(tmp_path):
    run(base, tmp_path, 3)
    with pytest.raises(SpaceChangedError, match=r"(?s)units: options changed.*on_space_change='reuse'"):
        run(options_changed, tmp_path, 3, on_space_change="error")
    assert [v.study_name for v in study_versions(load(tmp_path, "s")._storage, "s")] == ["s"]


def test_continue_keeps_one_study_where_optuna_can_mix_the_spaces(tmp_path):
    run(base, tmp_path, 3)
    result, message = changed(range_narrowed, tmp_path, 5, on_space_change="continue")
    assert result.study.study_name == "s" and len(result.study.trials) == 5 and "same study" in message
    with pytest.raises(SpaceChangedError, match="units: Optuna cannot keep both"):
        run(options_changed, tmp_path, 6, on_space_change="continue")
    with pytest.raises(ValueError, match="on_space_change='later': use 'reuse'"):
        run(base, tmp_path, 6, on_space_change="later")


def test_each_version_reuses_from_every_earlier_one(tmp_path):
    run(base, tmp_path, 8)
    changed(range_narrowed, tmp_path, 4)
    third, message = changed(base, tmp_path, 4)  # back to the first space: version 3
    assert "since version 2" in message and "rate: range changed, uniform(0.1, 0.6) -> uniform(0, 1)" in message
    sources = {(t.user_attrs[REUSED_ATTR]["version"]) for t in reused(third.study)}
    assert sources == {1, 2} and len(reused(third.study)) == 8 + 4  # every trial of both fits the first space
    assert [(v.version, v.study_name, v.trials) for v in third.versions] == [(1, "s", 8), (2, "s@v2", 4),
                                                                               (3, "s@v3", 4)]


def units_loop(n=2):
    total = 0.0
    for i in range(n):
        total += abs({{choice([8, 16, 32], name=f"units_{i}")}} - 16)
    return total + {{uniform(0, 1)}}


def units_loop_changed(n=2):
    total = 0.0
    for i in range(n):
        total += abs({{choice([16, 64], name=f"units_{i}")}} - 16)
    return total + {{uniform(0, 1)}}


def test_templates_with_computed_names_are_matched_by_their_name_expression(tmp_path):
    first = run(units_loop, tmp_path, 20)
    result, message = changed(units_loop_changed, tmp_path, 3)
    assert "f\"units_{i}\": options changed" in message
    fitting = [t for t in first.study.trials if t.params["units_0"] == 16 and t.params["units_1"] == 16]
    assert fitting and len(reused(result.study)) == len(fitting)


def test_the_cli_shows_the_latest_version_and_lists_them(tmp_path, capsys):
    run(base, tmp_path, 3)
    changed(range_narrowed, tmp_path, 2)
    assert cli(["show", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "Study 's@v2': 2 trials" in out and "version 1" in out and "s@v2" in out
    assert cli(["show", str(tmp_path / "s"), "--study", "s"]) == 0  # the study's name: its latest version
    assert "Study 's@v2': 2 trials" in capsys.readouterr().out
    assert cli(["show", str(tmp_path / "s"), "--study", "s@v1"]) == 0  # one version by its number
    assert "Study 's': 3 trials" in capsys.readouterr().out


def test_a_study_recorded_before_versions_existed(tmp_path):
    """Studies written by earlier hyperbrace recorded only ``name: template`` lines: a change is still named."""
    from optuna.storages.journal import JournalFileBackend

    (tmp_path / "s").mkdir()
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "s" / "study.journal")))
    study = optuna.create_study(study_name="s", storage=storage)
    study.set_user_attr("hyperbrace.templates", ["units: {{choice([32, 64, 128])}}", "rate: {{uniform(0, 1)}}"])
    result, message = changed(range_narrowed, tmp_path, 2)
    assert "rate: range changed, {{uniform(0, 1)}} -> uniform(0.1, 0.6)" in message
    assert "units" not in message.split("Going on")[0] and result.study.study_name == "s@v2"


@pytest.mark.parametrize(
    "dist, value, expected",
    [
        ("uniform(0, 1)", 0.25, 0.25), ("uniform(0.5, 1)", 0.25, OUTSIDE), ("loguniform(1e-3, 1)", 0.01, 0.01),
        ("quniform(0, 10, 2)", 4.0, 4.0), ("quniform(0, 10, 3)", 4.0, OUTSIDE), ("randint(10)", 3, 3),
        ("uniformint(1, 3)", 4, OUTSIDE), ("randint(10)", 2.5, OUTSIDE), ("choice(['a', 'b'])", "b", "b"),
        ("choice([1, 2])", True, OUTSIDE), ("choice([(1, 2), 3])", "(1, 2)", 0), ("normal(0, 2)", 0.0, 0.5),
        ("lognormal(0, 1)", 1.0, 0.5), ("lognormal(0, 1)", -1.0, OUTSIDE), ("qloguniform(1, 100, 5)", 10.0, 10.0),
    ],
)
def test_a_recorded_value_is_found_in_the_new_distribution(dist, value, expected):
    from hyperbrace import space

    distribution = eval(dist, vars(space))
    got = raw_for(distribution, value)
    assert got is OUTSIDE if expected is OUTSIDE else got == pytest.approx(expected)
    if got is not OUTSIDE:
        assert distribution.record(got) == pytest.approx(value) if isinstance(value, float) else True


def test_pchoice_options_map_to_their_new_slice():
    from hyperbrace.space import pchoice

    new = pchoice([(0.5, "relu"), (0.3, "tanh"), (0.2, "gelu")])
    raw = raw_for(new, "tanh")
    assert 0.5 <= raw < 0.8 and new.record(raw) == "tanh" and raw_for(new, "elu") is OUTSIDE


SIZES = [8, 16, 32]


def sizes_from_a_global():
    size = {{choice(SIZES)}}
    return abs(size - 16) + {{uniform(0, 1)}}


def test_a_changed_global_in_a_template_is_a_changed_space(tmp_path, monkeypatch):
    run(sizes_from_a_global, tmp_path, 6)
    monkeypatch.setitem(globals(), "SIZES", [16, 64])
    result, message = changed(sizes_from_a_global, tmp_path, 3)
    assert "size: options changed, choice([8, 16, 32]) -> choice([16, 64])" in message
    assert all(t.params["size"] in (16, 64) for t in result.study.trials)  # reused ones too: only 16 fits


def accuracy_wide():
    x = {{uniform(-2, 2)}}
    return {"accuracy": 1 - (x - 1) ** 2}


def accuracy_narrow():
    x = {{uniform(0, 2)}}
    return {"accuracy": 1 - (x - 1) ** 2}


def test_a_maximized_search_keeps_its_metric_in_the_new_version(tmp_path):
    from hyperbrace import maximize

    options = {"directory": tmp_path, "study_name": "s", "show_progress": False, "seed": 0, "metric": "accuracy"}
    first = maximize(accuracy_wide, max_evals=8, **options)
    with pytest.warns(SpaceChanged):
        second = maximize(accuracy_narrow, max_evals=3, **options)
    assert second.study.study_name == "s@v2" and len(second.trials) == 3
    fitting = [-t.value for t in first.study.trials if 0 <= t.params["x"] <= 2]  # the study stores -accuracy
    assert len(reused(second.study)) == len(fitting)
    assert 0 <= second.best_run["x"] <= 2 and second.best_value >= max(fitting)
