"""``minimize`` and ``evaluate`` end to end, on plain Python objectives (no framework): data passing, the result
object, storage and resume (also after the process was killed), algorithms and seeds, saved models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from hyperbrace import SearchResult, TemplateError, evaluate, minimize
from hyperbrace.budget import counted_trials

HELPERS = Path(__file__).parent / "helpers"
REPO = Path(__file__).parent.parent


def search(fn, tmp_path, **options) -> SearchResult:
    options = {"max_evals": 5, "directory": tmp_path, "show_progress": False, "seed": 0, **options}
    return minimize(fn, **options)


def journal_study(run_dir: Path, study_name: str | None = None) -> optuna.Study:
    """The study as Optuna's own tools open it: ``optuna.load_study`` on the run directory's journal file."""
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))
    return optuna.load_study(study_name=study_name, storage=storage)


def quadratic():
    x = {{uniform(-5, 5)}}
    units = {{choice([8, 16, 32])}}
    return (x - 1) ** 2 + units / 100


# -- data and the model's arguments --------------------------------------------------------------------------------

DATA_CALLS: list[str] = []


def tuple_data():
    DATA_CALLS.append("tuple")
    return np.arange(4), np.ones(4)


def positional_model(x_train, y_train):
    return float(x_train.sum() + y_train.sum()) * {{uniform(1, 2)}}


def dict_data():
    return {"features": np.arange(3), "scale": 10}


def keyword_model(scale, features):
    return float(features.sum()) * scale + {{uniform(0, 1)}}


def single_data():
    return np.arange(5)


def single_model(array):
    return float(array.max()) + {{uniform(0, 1)}}


def parameterless_model():
    return {{uniform(0, 1)}}


def data_with_arguments(n, offset=0):
    return np.full(n, 1.0) + offset


def test_tuple_data_becomes_positional_arguments_and_data_runs_once(tmp_path):
    DATA_CALLS.clear()
    result = search(positional_model, tmp_path, data=tuple_data)
    assert DATA_CALLS == ["tuple"]  # once per process, never once per trial
    assert len(result.trials) == 5
    assert result.best_loss == pytest.approx(10 * result.best_run["uniform"])


def test_dict_data_becomes_keyword_arguments(tmp_path):
    result = search(keyword_model, tmp_path, data=dict_data)
    assert result.best_loss == pytest.approx(30 + result.best_run["uniform"])


def test_other_data_becomes_one_argument(tmp_path):
    result = search(single_model, tmp_path, data=single_data)
    assert result.best_loss == pytest.approx(4 + result.best_run["uniform"])


def test_model_without_parameters_with_and_without_data(tmp_path):
    assert search(parameterless_model, tmp_path / "a").best_loss < 1
    assert search(parameterless_model, tmp_path / "b", data=single_data).best_loss < 1  # data is not forced on it


def test_data_args_are_passed_to_data(tmp_path):
    result = search(single_model, tmp_path / "a", data=data_with_arguments, data_args=(3,))
    assert result.best_loss == pytest.approx(1 + result.best_run["uniform"])
    result = search(single_model, tmp_path / "b", data=data_with_arguments, data_args={"n": 2, "offset": 5})
    assert result.best_loss == pytest.approx(6 + result.best_run["uniform"])


def test_max_evals_must_be_a_positive_integer(tmp_path):
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="max_evals=.*positive integer"):
            search(quadratic, tmp_path, max_evals=bad)


# -- the result ----------------------------------------------------------------------------------------------------


def layered(x_train):
    activation = {{choice([("relu", 1), ("tanh", 2)])}}
    width = {{choice([8, 16])}}
    rate = {{uniform(0, 1)}}
    print(f"training with {activation} {width} {rate}")
    loss = abs(rate - 0.3) + activation[1] + width / 100
    return {"loss": loss, "status": "ok", "model": {"rate": rate, "width": width}, "accuracy": 1 - loss, "tag": "t"}


def test_result_fields_and_hyperas_unpacking(tmp_path):
    result = search(layered, tmp_path, data=lambda: np.zeros(2), max_evals=8)
    best = result.best_trial
    assert isinstance(best, optuna.trial.FrozenTrial) and best.value == result.best_loss
    assert result.best_loss == min(t.value for t in result.study.trials if t.value is not None)
    assert set(result.best_run) == {"activation", "width", "rate"}
    assert result.best_run["activation"] in ('("relu", 1)', '("tanh", 2)')  # an object option: its source text
    assert result.best_params["activation"] in (0, 1)  # the engine stores its index
    assert result.best_params["width"] == result.best_run["width"]
    assert result.best_model == {"rate": result.best_run["rate"], "width": result.best_run["width"]}
    best_run, best_model = result
    assert best_run == result.best_run and best_model == result.best_model
    assert isinstance(result.study, optuna.Study)
    assert result.study.study_name == "test_search.layered"  # <script>.<function>: re-running resumes it
    assert result.directory == tmp_path / "test_search.layered"
    assert "best_loss=" in repr(result)


def test_extras_and_the_trials_table(tmp_path):
    result = search(layered, tmp_path, data=lambda: np.zeros(2), max_evals=4)
    records = result.trials
    assert [r.number for r in records] == [0, 1, 2, 3]
    for record in records:
        assert record.state == "COMPLETE" and record.error is None and record.duration >= 0
        assert record.extras == {"accuracy": pytest.approx(1 - record.loss), "tag": "t"}  # extra keys are kept
        assert set(record.params) == {"activation", "width", "rate"}
    # Extras are Optuna user attributes too, so optuna-dashboard shows them.
    assert result.study.trials[0].user_attrs["tag"] == "t"
    summary = result.summary()
    assert summary.startswith("Study 'test_search.layered': 4 trials (4 complete)")
    header = summary.splitlines()[1].split()
    assert header == ["trial", "loss", "activation", "width", "rate"]
    assert summary.splitlines()[3].split()[0] == str(result.best_trial.number)  # best first


def test_each_trials_output_goes_to_its_log_file(tmp_path, capsys):
    result = search(layered, tmp_path, data=lambda: np.zeros(2), max_evals=2)
    assert "training with" not in capsys.readouterr().out
    log = (result.directory / "logs" / "trial-00001.log").read_text()
    assert f"training with" in log and str(result.trials[1].params["width"]) in log


def test_show_progress_prints_the_summary_table(tmp_path, capsys):
    result = search(quadratic, tmp_path, show_progress=True, max_evals=3)
    out = capsys.readouterr().out
    assert result.summary() in out


def test_timeout_stops_starting_trials(tmp_path):
    def slow():
        time.sleep(0.05)
        return {{uniform(0, 1)}}

    result = search(slow, tmp_path, max_evals=10_000, timeout=2)
    assert len(result.trials) < 10_000  # 10,000 trials of 50 ms would take over 8 minutes
    assert all(t.state == "COMPLETE" for t in result.trials)  # a trial that started is finished, not cut off


# -- storage and resume --------------------------------------------------------------------------------------------


def test_the_run_directory_holds_a_journal_study_that_optuna_opens(tmp_path):
    result = search(quadratic, tmp_path, max_evals=4)
    run_dir = tmp_path / "test_search.quadratic"
    assert (run_dir / "study.journal").is_file() and (run_dir / "logs").is_dir()
    study = journal_study(run_dir, "test_search.quadratic")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert study.best_value == result.best_loss
    assert study.best_trial.user_attrs["hb.values"] == result.best_run


def test_max_evals_is_a_total_so_running_again_continues(tmp_path):
    first = [t.params for t in search(quadratic, tmp_path, max_evals=3).trials]
    assert len(first) == 3
    second = search(quadratic, tmp_path, max_evals=7)
    assert len(second.trials) == 7
    assert [t.params for t in second.trials[:3]] == first  # the same study, kept
    again = search(quadratic, tmp_path, max_evals=7)  # the budget is spent: nothing more runs
    assert len(again.trials) == 7


def test_a_resumed_seeded_search_does_not_replay_its_first_draws(tmp_path):
    search(quadratic, tmp_path, max_evals=4, algo="random", seed=5)
    resumed = search(quadratic, tmp_path, max_evals=8, algo="random", seed=5)
    xs = [t.params["x"] for t in resumed.trials]
    assert len(set(xs)) == 8


def test_a_killed_search_resumes_and_finishes_with_exactly_max_evals(tmp_path):
    """SIGKILL a search script while trial 2 runs, run the script again: the dead trial is failed and run again
    with the same parameters, and the study ends with exactly max_evals counted trials."""
    script, marker = HELPERS / "killable_search.py", tmp_path / "trial-2-started"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    hanging = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), "5"],
        env={**env, "HB_TEST_HANG_AT": "2", "HB_TEST_MARKER": str(marker)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert hanging.poll() is None, hanging.stdout.read().decode()
            assert time.monotonic() < deadline, "the search script never reached trial 2"
            time.sleep(0.05)
    finally:
        hanging.send_signal(signal.SIGKILL)
        hanging.wait()
    run_dir = tmp_path / "killable_search.objective"
    killed = journal_study(run_dir)
    assert [t.state for t in killed.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.RUNNING]
    hung_x = killed.trials[2].params["x"]
    assert repr(hung_x) == marker.read_text()

    rerun = subprocess.run([sys.executable, str(script), str(tmp_path), "5"], env=env, capture_output=True,
                           text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    study = journal_study(run_dir)
    states = [t.state for t in study.trials]
    assert counted_trials(study) == 5
    assert states.count(TrialState.COMPLETE) == 5 and states.count(TrialState.FAIL) == 1
    dead = study.trials[2]
    assert dead.state == TrialState.FAIL and dead.user_attrs["hb.error"].startswith("its process died")
    [retry] = [t for t in study.trials if t.system_attrs.get("failed_trial") == 2]
    assert retry.state == TrialState.COMPLETE and retry.params["x"] == hung_x  # the same configuration again
    assert not any(t.state == TrialState.RUNNING for t in study.trials)


def test_sqlite_storage_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    result = search(quadratic, tmp_path, storage=url, study_name="sq", max_evals=4)
    study = optuna.load_study(study_name="sq", storage=url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert study.best_value == result.best_loss
    assert (tmp_path / "sq" / "logs" / "trial-00003.log").is_file()  # logs and models stay in the run directory
    assert not (tmp_path / "sq" / "study.journal").exists()
    assert len(search(quadratic, tmp_path, storage=url, study_name="sq", max_evals=6).trials) == 6  # resumes


def test_storage_must_be_a_database_url(tmp_path):
    with pytest.raises(ValueError, match="pass directory= instead"):
        search(quadratic, tmp_path, storage="runs/study.journal")
    with pytest.raises(ValueError, match="is not a database URL"):
        search(quadratic, tmp_path, storage="studies.db")


# -- algorithms and seeds ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["tpe", "random"])
def test_same_seed_gives_the_same_suggestions(tmp_path, algo):
    def params(result):
        return [t.params for t in result.trials]

    first = search(quadratic, tmp_path, algo=algo, seed=42, study_name="a", max_evals=12)
    second = search(quadratic, tmp_path, algo=algo, seed=42, study_name="b", max_evals=12)
    other = search(quadratic, tmp_path, algo=algo, seed=43, study_name="c", max_evals=12)
    assert params(first) == params(second)
    assert params(first) != params(other)


def floats_and_ints():
    x = {{uniform(-2, 2)}}
    n = {{uniformint(1, 4)}}
    lr = {{loguniform(1e-3, 1)}}
    return (x - 0.5) ** 2 + n + lr


@pytest.mark.parametrize(
    "algo, sampler",
    [("tpe", "TPESampler"), ("random", "RandomSampler"), ("cmaes", "CmaEsSampler"), ("gp", "GPSampler"),
     ("qmc", "QMCSampler")],
)
def test_named_algorithms(tmp_path, algo, sampler):
    result = search(floats_and_ints, tmp_path, algo=algo, max_evals=6)
    assert type(result.study.sampler).__name__ == sampler
    assert [t.state for t in result.trials] == ["COMPLETE"] * 6
    assert all(-2 <= t.params["x"] <= 2 and t.params["n"] in (1, 2, 3, 4) for t in result.trials)


def test_an_optuna_sampler_instance_is_used_as_is(tmp_path):
    sampler = optuna.samplers.RandomSampler(seed=1)
    result = search(floats_and_ints, tmp_path, algo=sampler, max_evals=3)
    assert result.study.sampler is sampler


def test_unknown_algo_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a known search algorithm"):
        search(quadratic, tmp_path, algo="annealing")


def finite_space():
    optimizer = {{choice(["adam", "sgd"])}}
    layers = {{randint(3)}}
    return {"adam": 0.0, "sgd": 1.0}[optimizer] + layers


def test_grid_tries_every_combination_once_and_stops(tmp_path):
    result = search(finite_space, tmp_path, algo="grid", max_evals=50)
    combos = [(t.params["optimizer"], t.params["layers"]) for t in result.trials]
    assert sorted(combos) == sorted((o, n) for o in ("adam", "sgd") for n in range(3))
    assert all(t.state == "COMPLETE" for t in result.trials)
    assert result.best_run == {"optimizer": "adam", "layers": 0}
    assert len(search(finite_space, tmp_path, algo="grid", max_evals=50).trials) == 6


def test_an_optuna_grid_sampler_instance_finishes_its_grid(tmp_path):
    sampler = optuna.samplers.GridSampler({"optimizer": ["adam", "sgd"], "layers": [0, 2]}, seed=0)
    result = search(finite_space, tmp_path, algo=sampler, max_evals=4)
    assert result.study.sampler is sampler
    assert sorted((t.params["optimizer"], t.params["layers"]) for t in result.trials) == [
        ("adam", 0), ("adam", 2), ("sgd", 0), ("sgd", 2)
    ]


def test_grid_needs_a_finite_space(tmp_path):
    with pytest.raises(TemplateError) as info:
        search(quadratic, tmp_path, algo="grid")
    assert "{{uniform(-5, 5)}}" in str(info.value) and "algo='grid' needs a finite list" in str(info.value)


# -- models on disk, and evaluate() --------------------------------------------------------------------------------


class Fitted:
    """A picklable 'model' (the pickle fallback saves anything that is not Keras or PyTorch)."""

    def __init__(self, x):
        self.x = x

    def predict(self, value):
        return value * self.x


def with_model():
    x = {{uniform(0, 10)}}
    return {"loss": abs(x - 3), "model": Fitted(x)}


def test_only_the_top_k_models_are_kept(tmp_path):
    result = search(with_model, tmp_path, max_evals=10, keep_models=2, algo="random")
    ranked = sorted((t for t in result.trials), key=lambda t: t.loss)
    files = sorted(p.name for p in (result.directory / "models").iterdir())
    # Each kept model, and beside it the record of which study and trial it belongs to (hyperbrace.model_files).
    assert files == sorted(f"trial-{t.number:05d}{suffix}" for t in ranked[:2] for suffix in (".owner.json", ".pkl"))
    assert [t.model_path is not None for t in ranked] == [True, True] + [False] * 8
    best = result.best_model
    assert isinstance(best, Fitted) and best.x == result.best_run["x"] and best.predict(2) == 2 * best.x
    assert result.load_model(ranked[1].number).x == ranked[1].params["x"]
    # A model saved while its trial was among the best two, then deleted when two better ones came.
    top = {ranked[0].number, ranked[1].number}
    dropped = [t.number for t in result.study.trials if "hb.model" in t.user_attrs and t.number not in top]
    assert dropped, "with this seed, trials 0 and 1 are saved first and later beaten"
    with pytest.raises(FileNotFoundError, match="only the best keep_models models are kept"):
        result.load_model(dropped[0])


def test_keep_models_zero_saves_none(tmp_path):
    result = search(with_model, tmp_path, max_evals=3, keep_models=0)
    assert result.best_model is None and not (result.directory / "models").exists()


def test_a_new_result_loads_the_best_model_from_disk(tmp_path):
    search(with_model, tmp_path, max_evals=4)
    reopened = search(with_model, tmp_path, max_evals=4)  # nothing more to run: the model comes from disk
    assert isinstance(reopened.best_model, Fitted) and reopened.best_model.x == reopened.best_run["x"]


def test_evaluate_reruns_the_best_configuration(tmp_path):
    result = search(layered, tmp_path, data=lambda: np.zeros(2), max_evals=5)
    again = evaluate(layered, result.best_params, data=lambda: np.zeros(2))
    assert again["loss"] == result.best_loss and again["model"] == result.best_model
    assert evaluate(quadratic, {"x": 1.0, "units": 8}) == pytest.approx(0.08)


def test_evaluate_says_which_parameter_is_missing():
    with pytest.raises(TemplateError) as info:
        evaluate(quadratic, {"x": 1.0})
    assert "{{choice([8, 16, 32])}}" in str(info.value) and "'units' is not found" in str(info.value)


def test_sqlite_budget_lock_lives_beside_the_database_file(tmp_path):
    from hyperbrace.storage import RunStorage

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    here = RunStorage.resolve(url, tmp_path / "machine_a", "study")
    there = RunStorage.resolve(url, tmp_path / "machine_b", "study")
    assert here.budget_lock_path == there.budget_lock_path
    assert here.budget_lock_path.parent == tmp_path


def test_a_process_in_another_directory_waits_for_the_sqlite_budget_lock(tmp_path):
    """The lock is the study's, not the run directory's: while another process (here: the test) holds it, a
    search started from a different directory takes no trial; once released, it takes exactly max_evals."""
    import fcntl
    import os
    import subprocess
    import sys
    import time

    import optuna

    from hyperbrace.storage import RunStorage

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(storage=url, study_name="shared")
    script = tmp_path / "search.py"
    script.write_text(
        "import sys\n"
        "from hyperbrace import minimize, uniform\n"
        "def objective():\n"
        "    return {{uniform(0, 1)}}\n"
        f"minimize(objective, max_evals=4, storage={url!r}, study_name='shared', directory=sys.argv[1],\n"
        "         show_progress=False, prune=None)\n"
    )
    lock_path = RunStorage.resolve(url, tmp_path / "machine_a", "shared").budget_lock_path
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        process = subprocess.Popen([sys.executable, str(script), str(tmp_path / "machine_b")], cwd=tmp_path)
        time.sleep(4)  # ample time to start and, were the lock elsewhere, to run all 4 trivial trials
        assert process.poll() is None
        assert optuna.load_study(study_name="shared", storage=url).trials == []
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert process.wait(timeout=120) == 0
    assert len(optuna.load_study(study_name="shared", storage=url).trials) == 4
