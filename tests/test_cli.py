"""The ``hyperbrace`` command: ``show`` prints a search's summary; ``worker`` joins a search kept in a database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hyperbrace import minimize, uniform  # noqa: F401  (templates name the distributions)
from hyperbrace.cli import main

REPO = Path(__file__).resolve().parents[1]


def quadratic():
    x = {{uniform(-2, 2)}}
    return (x - 1) ** 2


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("runs")
    minimize(quadratic, max_evals=6, seed=0, directory=directory, show_progress=False)
    return directory / "test_cli.quadratic"


def test_show_prints_the_summary_of_a_run_directory(finished_run, capsys):
    assert main(["show", str(finished_run), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Study 'test_cli.quadratic': 6 trials (6 complete)")
    assert "trial  loss" in out and len([line for line in out.splitlines() if line[:1].isdigit()]) == 3
    # The journal file itself works as well.
    assert main(["show", str(finished_run / "study.journal")]) == 0
    assert "6 trials" in capsys.readouterr().out


def test_show_reads_a_database_and_asks_which_study_when_there_are_several(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    for name in ("first", "second"):
        minimize(quadratic, max_evals=2, storage=url, study_name=name, directory=tmp_path, show_progress=False)
    assert main(["show", "--storage", url, "--study", "second"]) == 0
    assert "Study 'second': 2 trials" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["show", "--storage", url])
    assert exit_.value.code == 2
    assert "pick one with --study: first, second" in capsys.readouterr().err


def test_show_explains_a_path_that_is_not_a_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["show", str(tmp_path)])
    assert exit_.value.code == 2
    assert "has no study.journal" in capsys.readouterr().err


SEARCH = """
import os, sys, time
from pathlib import Path
from hyperbrace import minimize, uniform

# The chief's trials wait until a worker's trial has run, so the test does not depend on how fast the worker
# process starts on a loaded machine.
CHIEF = os.getpid()

def model():
    x = {{uniform(-1, 1)}}
    if os.getpid() != CHIEF:
        Path("worker-joined").touch()
    deadline = time.time() + 90
    while os.getpid() == CHIEF and not Path("worker-joined").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.2)
    return {"loss": x * x, "pid": os.getpid()}

if __name__ == "__main__":
    minimize(model, max_evals=10, storage=sys.argv[1], study_name="shared", show_progress=False)
"""


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def test_worker_with_two_processes_joins_a_search_started_by_a_script(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    (tmp_path / "search.py").write_text(SEARCH)
    chief = subprocess.Popen([sys.executable, "search.py", url], cwd=tmp_path, env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "hyperbrace.cli", "worker", "--storage", url, "--study", "shared", "--n-jobs", "2",
         "--wait", "60"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _, chief_err = chief.communicate(timeout=120)
    _, worker_err = worker.communicate(timeout=120)
    assert chief.returncode == 0, chief_err
    assert worker.returncode == 0, worker_err
    assert "the search's budget is used up" in worker_err
    study = optuna.load_study(study_name="shared", storage=url)
    trials = study.get_trials()
    assert len(trials) == 10 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) >= 2

    # A worker that comes after the budget is used up leaves at once, and says so.
    late = subprocess.run([sys.executable, "-m", "hyperbrace.cli", "worker", "--storage", url, "--study", "shared"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60)
    assert late.returncode == 0 and "budget is used up" in late.stderr
    assert len(optuna.load_study(study_name="shared", storage=url).trials) == 10


def test_worker_refuses_a_path_instead_of_a_url(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["worker", "--storage", str(tmp_path), "--study", "x"])
    assert exit_.value.code == 2
    assert "database URL" in capsys.readouterr().err


def test_show_without_arguments_says_what_to_give_and_rejects_a_top_below_one(finished_run, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["show"])
    assert exit_.value.code == 2
    assert "give the search to read: a run directory" in capsys.readouterr().err
    for top in ("0", "-3"):
        with pytest.raises(SystemExit) as exit_:
            main(["show", str(finished_run), "--top", top])
        assert exit_.value.code == 2
        assert f"--top {top}: give how many" in capsys.readouterr().err


def test_show_counts_every_state_and_lists_failures_on_request(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    study = optuna.create_study(study_name="mixed", storage=url)
    study.add_trial(optuna.trial.create_trial(value=0.5, params={}, distributions={}))
    for error in ("ValueError: bad width", "ValueError: bad width", "OSError: disk full"):
        study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"hb.error": error}))
    study.enqueue_trial({})
    assert main(["show", url]) == 0
    assert "Study 'mixed': 5 trials (1 complete, 3 fail, 1 waiting)" in capsys.readouterr().out
    assert main(["show", url, "--failures"]) == 0
    out = capsys.readouterr().out
    assert "2 failed with ValueError: bad width\n  trials: 1, 2" in out
    assert "1 failed with OSError: disk full\n  trials: 3" in out


def test_show_never_creates_a_storage(tmp_path, capsys):
    missing = tmp_path / "absent.db"
    with pytest.raises(SystemExit):
        main(["show", f"sqlite:///{missing}"])
    assert "there is no database file" in capsys.readouterr().err and not missing.exists()
    with pytest.raises(SystemExit):
        main(["show", str(tmp_path / "nothing-here")])
    assert "no such file or directory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
