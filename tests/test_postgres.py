"""Searches shared through a real PostgreSQL server: machines joining one study, workers killed mid-trial.

The server is the one ``scripts/test-postgres.sh`` starts (``make test`` and ``.ci/run`` do), found through
``HYPERBRACE_TEST_POSTGRES_URL``; there is no mock. Each test uses a study of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hyperbrace import minimize
from hyperbrace.budget import counted_trials
from hyperbrace.executor import PLAN_ATTR

from test_parallel import _kill_first_worker, check_killed_trial_retried, marked_sleep

URL = os.environ.get("HYPERBRACE_TEST_POSTGRES_URL")
REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not URL,
        reason="no PostgreSQL server: run the tests with `make test` (or `bash scripts/test-postgres.sh run pytest`), "
        "which starts one and sets HYPERBRACE_TEST_POSTGRES_URL",
    ),
]


def _fresh_name(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


def _env() -> dict[str, str]:
    # Every "machine" has the same plan key, as a real cluster would (see docs/security.md).
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                HYPERBRACE_PLAN_KEY="test-cluster-key")


CHIEF = """
import os, sys, time
from hyperbrace import minimize, uniform

def model():
    x = {{uniform(-1, 1)}}
    time.sleep(0.4)
    return {"loss": x * x, "machine": os.path.basename(os.getcwd())}

minimize(model, max_evals=int(sys.argv[3]), storage=sys.argv[1], study_name=sys.argv[2], show_progress=False)
"""


def test_two_machines_join_one_study_by_script_and_by_hyperbrace_worker(tmp_path):
    """Three "machines" (processes with their own working directories, so nothing on disk is shared): the chief
    runs the script, another runs `hyperbrace worker`, a third runs the same script. They share only the database."""
    name = _fresh_name("machines")
    max_evals = 14
    machines = {m: tmp_path / m for m in ("chief", "cli", "twin")}
    for directory in machines.values():
        directory.mkdir()
        (directory / "search.py").write_text(CHIEF)
    # The CLI worker starts first and waits for the chief to publish the search.
    cli = subprocess.Popen(
        [sys.executable, "-m", "hyperbrace.cli", "worker", "--storage", URL, "--study", name, "--wait", "60"],
        cwd=machines["cli"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    chief = subprocess.Popen([sys.executable, "search.py", URL, name, str(max_evals)], cwd=machines["chief"],
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    twin = subprocess.Popen([sys.executable, "search.py", URL, name, str(max_evals)], cwd=machines["twin"],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for process in (chief, twin, cli):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err

    study = optuna.load_study(study_name=name, storage=URL)
    trials = study.get_trials()
    assert len(trials) == max_evals and counted_trials(study) == max_evals  # exact, across machines
    assert sorted(t.number for t in trials) == list(range(max_evals))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    by_machine = {t.user_attrs["machine"] for t in trials}
    assert "chief" in by_machine and len(by_machine) >= 2
    assert "cli" in by_machine, "the hyperbrace worker ran no trial"
    # Each machine keeps its own trials' logs in its own run directory.
    cli_logs = list((machines["cli"] / "hyperbrace-runs").rglob("trial-*.log"))
    assert len(cli_logs) == sum(t.user_attrs["machine"] == "cli" for t in trials)
    assert PLAN_ATTR in study._storage.get_study_system_attrs(study._study_id)


def test_sigkilled_worker_on_postgres_is_failed_retried_and_the_budget_is_exact(tmp_path):
    name = _fresh_name("sigkill")
    markers = tmp_path / "markers"
    markers.mkdir()
    killed: list[int] = []
    killer = threading.Thread(target=_kill_first_worker, args=(markers, killed), daemon=True)
    killer.start()
    result = minimize(marked_sleep, data=lambda d: d, data_args=(str(markers),), max_evals=5, n_jobs=2,
                      storage=URL, study_name=name, directory=tmp_path / "runs", show_progress=False)
    killer.join()
    assert killed
    check_killed_trial_retried(result.study, 5)


def test_hyperbrace_worker_waits_then_explains_a_missing_study(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hyperbrace.cli", "worker", "--storage", URL, "--study", _fresh_name("absent"),
         "--wait", "0"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "there is no study" in result.stderr


VERSIONED = """
import sys, time
from hyperbrace import minimize, uniform

def model():
    x = {{uniform(%s)}}
    time.sleep(0.3)
    return x * x

minimize(model, max_evals=int(sys.argv[3]), storage=sys.argv[1], study_name=sys.argv[2], show_progress=False)
"""


def test_a_changed_space_on_a_shared_database_makes_one_new_version_that_workers_join(tmp_path):
    """Version 1 on PostgreSQL; then two machines start the changed script at once, and a `hyperbrace worker`
    joins by the study's plain name: one version 2 (warm-started once), exact budget, nothing in version 1 changed."""
    name = _fresh_name("versions")
    machines = {m: tmp_path / m for m in ("chief", "twin", "cli")}
    for directory in machines.values():
        directory.mkdir()
    (machines["chief"] / "search.py").write_text(VERSIONED % "-1, 1")
    first = subprocess.run([sys.executable, "search.py", URL, name, "6"], cwd=machines["chief"], env=_env(),
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    v1_trials = optuna.load_study(study_name=name, storage=URL).trials
    for machine in ("chief", "twin"):
        (machines[machine] / "search.py").write_text(VERSIONED % "0, 1")
    processes = [
        subprocess.Popen([sys.executable, "search.py", URL, name, "8"], cwd=machines[m], env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for m in ("chief", "twin")
    ]
    deadline = time.monotonic() + 60
    while f"{name}@v2" not in optuna.get_all_study_names(URL) and time.monotonic() < deadline:
        time.sleep(0.2)  # the worker joins by the plain name once version 2 exists
    processes.append(subprocess.Popen(
        [sys.executable, "-m", "hyperbrace.cli", "worker", "--storage", URL, "--study", name, "--wait", "60"],
        cwd=machines["cli"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ))
    errors = []
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        errors.append(err)
    assert "x: range changed, uniform(-1, 1) -> uniform(0, 1)" in errors[0] + errors[1]
    assert f"joined study {name + '@v2'!r}" in errors[2]
    v2 = optuna.load_study(study_name=f"{name}@v2", storage=URL)
    fitting = [t for t in v1_trials if 0 <= t.params["x"] <= 1]
    reused = [t for t in v2.trials if "hb.reused_from" in t.user_attrs]
    assert len(reused) == len(fitting)  # warm-started once, though two machines opened the new version
    assert counted_trials(v2) == 8 and len(v2.trials) == 8 + len(fitting)
    assert all(t.state == TrialState.COMPLETE and 0 <= t.params["x"] <= 1 for t in v2.trials)
    assert optuna.load_study(study_name=name, storage=URL).trials == v1_trials
    assert PLAN_ATTR in v2._storage.get_study_system_attrs(v2._study_id)
