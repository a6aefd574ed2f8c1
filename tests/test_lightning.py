"""PyTorch Lightning as first-class as Keras: a trial that calls ``Trainer.fit`` is pruned with no callback written by
the user, its best LightningModule is saved and reloads, Lightning's console output lands in the trial's log, and a
Ctrl-C inside ``fit`` (which Lightning turns into ``sys.exit(1)``) interrupts the search like any Ctrl-C: the trial
is queued again, nothing stays RUNNING, and running the search again finishes it: in one process, and with
``n_jobs=2`` (Lightning exits inside each worker; the trials must still read "interrupted", not "worker died").

Each step runs ``tests/helpers/lightning_search.py`` in a process of its own (Lightning, like Keras, must not enter
the pytest process: its integration acts on every later trial). About 45 s on a loaded 2-core machine, plus
70 s for the n_jobs=2 Ctrl-C test at load 6 (it starts four Lightning processes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("lightning")

SCRIPT = Path(__file__).parent / "helpers" / "lightning_search.py"
REPO = Path(__file__).parent.parent


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def _report(stdout: str) -> dict:
    [line] = [line for line in stdout.splitlines() if line.startswith("REPORT ")]
    return json.loads(line.removeprefix("REPORT "))


def run_step(step: str, path: Path, cwd: Path, **env: str) -> dict:
    done = subprocess.run([sys.executable, str(SCRIPT), step, str(path)], cwd=cwd, env=_env(**env),
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    report = _report(done.stdout)
    report["stderr"] = done.stderr
    return report


def test_lightning_search_prunes_saves_and_logs_by_itself(tmp_path):
    found = run_step("search", tmp_path / "runs", tmp_path)
    # Median pruning from epoch 1 on, once one trial finished: the frozen model (trial 1) is stopped after its
    # first validation, the others train their 4 epochs, reporting val_loss at epochs 1-4.
    assert found["states"] == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert found["steps"] == [[1, 2, 3, 4], [1], [1, 2, 3, 4]]
    # The user's callback kept running (the pruned trial stopped inside its first epoch, as with Optuna's callback).
    assert found["epochs_seen"] == {"0": 4, "2": 4}
    assert found["best_run"] == {"config": "trains", "hidden": 16}
    assert len(found["models"]) == 1 and found["models"][0].endswith(".pt")
    # Lightning's messages are in each trial's log, not on the console.
    logs = found["logs"]
    assert all("GPU available" in text for text in logs.values()), logs
    assert "[hyperbrace] pruned at step 1" in logs["trial-00001.log"]
    assert "GPU available" not in found["stderr"] and "Trainable params" not in found["stderr"], found["stderr"]

    reloaded = run_step("reload", Path(found["directory"]), tmp_path)
    assert reloaded["is_lightning_module"] and reloaded["class"] == "Classifier"
    assert reloaded["hidden"] == found["best_run"]["hidden"]
    assert reloaded["score"] == pytest.approx(found["best_loss"], rel=1e-5)


def interrupt_while_fitting(tmp_path: Path, jobs: int) -> tuple[str, list]:
    """Run the ``interrupt`` step with ``jobs`` workers, press Ctrl-C once ``jobs`` trials are inside
    ``Trainer.fit``, and return the search's stderr and its trials.

    The search runs in a process group of its own and gets SIGINT as a terminal's Ctrl-C sends it: to the whole
    foreground group (``os.killpg``)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    marker = tmp_path / "fitting"
    marker.mkdir()
    runs = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, str(SCRIPT), "interrupt", str(runs)], cwd=tmp_path,
                               env=_env(HB_TEST_MARKER=str(marker), HB_TEST_EPOCHS="100000", HB_TEST_JOBS=str(jobs)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(marker.iterdir())) < jobs:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the trials never started fitting"
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(runs / "lightning" / "study.journal")))
    return err, optuna.load_study(study_name="lightning", storage=storage).trials


def test_ctrl_c_inside_trainer_fit_requeues_the_trial(tmp_path):
    err, trials = interrupt_while_fitting(tmp_path, jobs=1)
    # minimize raised KeyboardInterrupt (not Lightning's SystemExit(1) from inside fit).
    assert "KeyboardInterrupt" in err, err
    assert "SystemExit" not in err, err
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]  # failed as interrupted, and queued again
    assert trials[0].user_attrs["hb.error"] == "interrupted (Ctrl-C)"
    assert trials[1].params == trials[0].params

    resumed = run_step("resume", tmp_path / "runs", tmp_path, HB_TEST_EPOCHS="2")
    assert resumed["states"] == ["FAIL", "COMPLETE", "COMPLETE"]


def test_ctrl_c_inside_trainer_fit_in_workers_requeues_both_trials(tmp_path):
    # n_jobs=2: each worker is inside Lightning's fit when the search is interrupted; Lightning calls sys.exit(1)
    # in the worker, which must still fail the trial as interrupted (not "worker died") and queue it again.
    err, trials = interrupt_while_fitting(tmp_path, jobs=2)
    assert "KeyboardInterrupt" in err, err
    assert "SystemExit" not in err and "died" not in err, err
    states = [t.state.name for t in trials]
    assert states == ["FAIL", "FAIL", "WAITING", "WAITING"], states  # nothing RUNNING
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert [t.user_attrs["hb.error"] for t in failed] == ["interrupted (Ctrl-C)"] * 2
    queued = [t for t in trials if t.state.name == "WAITING"]
    assert sorted(str(t.params) for t in queued) == sorted(str(t.params) for t in failed)

    # Running it again (in one process: worker start-ups are what make this test slow) finishes both queued
    # configurations; the frozen one may be pruned once the other completed.
    resumed = run_step("resume", tmp_path / "runs", tmp_path, HB_TEST_EPOCHS="2")
    assert resumed["states"][:2] == ["FAIL", "FAIL"]
    assert set(resumed["states"][2:]) <= {"COMPLETE", "PRUNED"}, resumed["states"]
