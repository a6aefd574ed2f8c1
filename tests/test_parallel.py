"""Local worker processes: exact budgets, dead and interrupted workers, errors, GPUs, threads, shared data, notebooks.

The objectives are cheap (a sleep where trials must overlap), so the whole file runs in well under a minute on two
cores. Every search writes into ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from hyperbrace import TrialFailedError, minimize, uniform  # noqa: F401  (templates name the distributions)
from hyperbrace.budget import counted_trials
from hyperbrace.executor import share_data, thread_caps, usable_cpus, visible_gpus

REPO = Path(__file__).resolve().parents[1]


def _pids(result) -> set[str]:
    return {t.user_attrs["hb.worker"] for t in result.study.trials if "hb.worker" in t.user_attrs}


def sleepy(pause):
    x = {{uniform(-1, 1)}}
    time.sleep(pause)
    return {"loss": x * x, "pid": os.getpid()}


def test_workers_complete_exactly_max_evals_with_distinct_numbers(tmp_path):
    result = minimize(sleepy, lambda: 0.2, max_evals=9, n_jobs=3, directory=tmp_path, show_progress=False, seed=0)
    trials = result.study.trials
    assert len(trials) == 9
    assert sorted(t.number for t in trials) == list(range(9))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) >= 2  # trials really ran in several processes
    assert os.getpid() not in {t.user_attrs["pid"] for t in trials}
    assert not (tmp_path / "test_parallel.sleepy" / ".workers").exists()  # the session's files are cleaned up

    # Running the same search again with a larger budget continues it: the count is the study's, not the run's.
    again = minimize(sleepy, lambda: 0.0, max_evals=12, n_jobs=2, directory=tmp_path, show_progress=False)
    assert len(again.study.trials) == 12
    assert counted_trials(again.study) == 12


def marked_sleep(marker_dir):
    x = {{uniform(0, 1)}}
    Path(marker_dir, f"{os.getpid()}-{time.time_ns()}").touch()
    time.sleep(1.0)
    return x


def _kill_first_worker(marker_dir: Path, killed: list[int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        markers = sorted(marker_dir.iterdir())
        if markers:
            pid = int(markers[0].name.split("-")[0])
            time.sleep(0.3)  # well inside its one-second trial
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.05)


def check_killed_trial_retried(study: optuna.Study, max_evals: int) -> None:
    trials = study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1, [(t.number, t.state) for t in trials]
    assert "died" in failed[0].user_attrs["hb.error"]
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == failed[0].params  # the same configuration ran again
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert counted_trials(study) == max_evals
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == max_evals


def test_sigkill_mid_trial_fails_that_trial_retries_it_and_replaces_the_worker(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    killed: list[int] = []
    killer = threading.Thread(target=_kill_first_worker, args=(markers, killed), daemon=True)
    killer.start()
    result = minimize(marked_sleep, data_args=(str(markers),), data=lambda d: d, max_evals=5, n_jobs=2,
                      directory=tmp_path / "runs", show_progress=False)
    killer.join()
    assert killed
    check_killed_trial_retried(result.study, 5)
    # The killed worker's trial was not its only one to finish; a replacement (a third process) took over.
    worker_pids = {int(w.split(":")[1]) for w in _pids(result)}
    assert killed[0] in worker_pids and len(worker_pids) >= 2


def always_fails():
    x = {{uniform(0, 1)}}
    return x / 0  # the same bug in every trial


def test_the_same_error_in_the_first_trials_stops_all_workers_and_is_raised_here(tmp_path):
    with pytest.raises(TrialFailedError) as caught:
        minimize(always_fails, max_evals=20, n_jobs=2, directory=tmp_path, show_progress=False)
    message = str(caught.value)
    assert "ZeroDivisionError" in message
    assert "test_parallel.py" in message and "x / 0" in message  # the user's file and line
    study = optuna.load_study(
        study_name="test_parallel.always_fails",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "test_parallel.always_fails/study.journal"))
        ),
    )
    assert len(study.trials) < 20  # stopped early
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]


def report_environment():
    x = {{uniform(0, 1)}}
    return {"loss": x, "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "omp": os.environ.get("OMP_NUM_THREADS")}


def test_each_gpu_gets_its_own_worker_and_each_trial_sees_one_gpu(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    result = minimize(report_environment, max_evals=8, gpus=[0, 1], directory=tmp_path, show_progress=False)
    trials = result.study.trials
    assert len(trials) == 8
    seen_by_worker: dict[str, set[str]] = {}
    for t in trials:
        seen_by_worker.setdefault(t.user_attrs["hb.worker"], set()).add(t.user_attrs["gpu"])
    assert all(len(gpus) == 1 for gpus in seen_by_worker.values())  # a worker never switches GPU
    assert set().union(*seen_by_worker.values()) <= {"0", "1"}
    # Each worker's math libraries get its share of the cores (two workers).
    assert {t.user_attrs["omp"] for t in trials} == {str(max(1, usable_cpus() // 2))}


def test_gpus_all_uses_the_visible_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert visible_gpus() == ["3", "5"]
    result = minimize(report_environment, max_evals=4, gpus="all", directory=tmp_path, show_progress=False)
    assert {t.user_attrs["gpu"] for t in result.study.trials} <= {"3", "5"}


def test_visible_gpus_on_a_machine_without_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,-1,1")
    assert visible_gpus() == ["0"]  # CUDA ignores the ids after an invalid one


def test_thread_caps_keep_what_the_user_set():
    caps = thread_caps(4, environ={"OMP_NUM_THREADS": "8"})
    assert "OMP_NUM_THREADS" not in caps
    assert caps["MKL_NUM_THREADS"] == str(max(1, usable_cpus() // 4))
    assert thread_caps(10_000, environ={})["OPENBLAS_NUM_THREADS"] == "1"


def counting_data(counter):
    with open(counter, "a") as f:
        f.write(f"{os.getpid()}\n")
    x = np.arange(12.0).reshape(3, 4)
    return x, {"rows": x[:2] * 2, "label": "demo"}, [7, 8]


def uses_data(x, extra, numbers):
    scale = {{uniform(0, 1)}}
    x *= 1.0  # writing to the copy-on-write map must work and stay private to this worker
    return {"loss": scale, "kind": type(x).__name__, "sum": float(x.sum() + extra["rows"].sum()),
            "label": extra["label"], "numbers": numbers}


def test_data_is_made_once_and_its_arrays_are_memory_mapped_in_the_workers(tmp_path):
    counter = tmp_path / "calls.txt"
    result = minimize(uses_data, counting_data, data_args=[str(counter)], max_evals=4, n_jobs=2,
                      directory=tmp_path, show_progress=False)
    assert counter.read_text().splitlines() == [str(os.getpid())]  # once, in this process
    for t in result.study.trials:
        assert t.user_attrs["kind"] == "memmap"
        assert t.user_attrs["sum"] == 66.0 + 2 * 28.0
        assert t.user_attrs["label"] == "demo" and t.user_attrs["numbers"] == [7, 8]


def test_unpicklable_data_is_made_by_each_worker(tmp_path):
    plan = type("Plan", (), {})()  # share_data only reads .data and .data_args
    plan.data, plan.data_args = (lambda: (i for i in range(3))), None  # a generator does not pickle
    assert share_data(plan, tmp_path) is plan


SCRIPT = """
import os, sys, time
from hyperbrace import minimize, uniform

# No `if __name__ == "__main__":` guard, as in many scripts: workers must not run this file again.
print("script body ran", os.getpid(), flush=True)

def model():
    x = {{uniform(0, 1)}}
    time.sleep(float(os.environ.get("PAUSE", "0")))
    return x

minimize(model, max_evals=6, n_jobs=2, directory="runs", show_progress=False)
print("finished", flush=True)
"""


def _study(run_dir: Path, name: str) -> optuna.Study:
    backend = optuna.storages.journal.JournalFileBackend(str(run_dir / "study.journal"))
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(backend))


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def test_ctrl_c_stops_the_workers_cleanly_and_running_again_resumes(tmp_path):
    (tmp_path / "search.py").write_text(SCRIPT)
    run_dir = tmp_path / "runs" / "search.model"
    process = subprocess.Popen([sys.executable, "search.py"], cwd=tmp_path, env=_env(PAUSE="30"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until both workers are inside a trial
        logs = list((run_dir / "logs").glob("trial-*.log")) if (run_dir / "logs").exists() else []
        if len(logs) >= 2:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "KeyboardInterrupt" in err and "finished" not in out
    assert out.count("script body ran") == 1  # the workers never re-ran the script
    study = _study(run_dir, "search.model")
    interrupted = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(interrupted) == 2 and not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert len([t for t in study.trials if t.state == TrialState.WAITING]) == 2  # queued to run again

    rerun = subprocess.run([sys.executable, "search.py"], cwd=tmp_path, env=_env(PAUSE="0"), capture_output=True,
                           text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    study = _study(run_dir, "search.model")
    assert counted_trials(study) == 6
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 6
    retried = {t.system_attrs.get("failed_trial") for t in study.trials}
    assert {t.number for t in interrupted} <= retried  # the interrupted configurations ran again


def test_workers_of_a_killed_search_close_their_trials_and_exit(tmp_path):
    (tmp_path / "search.py").write_text(SCRIPT)
    run_dir = tmp_path / "runs" / "search.model"
    process = subprocess.Popen([sys.executable, "search.py"], cwd=tmp_path, env=_env(PAUSE="30"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(run_dir.glob("logs/trial-*.log"))) < 2:
        time.sleep(0.1)
    process.kill()  # SIGKILL: the parent gets no chance to stop its workers
    process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = [t.state for t in _study(run_dir, "search.model").trials]
        if TrialState.RUNNING not in states:
            break
        time.sleep(0.2)
    assert sorted(s.name for s in states) == ["FAIL", "FAIL", "WAITING", "WAITING"]  # closed and queued again


# -- notebooks ------------------------------------------------------------------------------------------------------
def _kernelspec(root: Path) -> str:
    """A kernelspec for this interpreter in ``root`` (pointed to by JUPYTER_PATH), so the test needs no set-up."""
    name = "hyperbrace-test"
    spec = root / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "hyperbrace test", "language": "python",
        "env": {"PYTHONPATH": str(REPO), "KERAS_BACKEND": "torch"},
    }))
    return name


def test_a_notebook_defined_model_runs_in_two_workers(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    kernel = _kernelspec(tmp_path / "jupyter")
    cells = [
        "import os\nimport numpy as np\nfrom hyperbrace import minimize, choice, uniform",
        "OFFSET = 0.5  # a notebook global the model uses\n\n"
        "def data():\n    return np.linspace(0, 1, 50),\n",
        "def create_model(x):\n"
        "    slope = {{uniform(0, 1)}}\n"
        "    power = {{choice([1, 2])}}\n"
        "    return {'loss': float(((x * slope) ** power - OFFSET).mean() ** 2), 'pid': os.getpid()}\n",
        f"result = minimize(create_model, data, max_evals=6, n_jobs=2, directory={str(tmp_path / 'runs')!r},\n"
        "                  show_progress=False)\n"
        "trials = result.study.trials\n"
        "assert len(trials) == 6 and all(t.state.name == 'COMPLETE' for t in trials), trials\n"
        "assert os.getpid() not in {t.user_attrs['pid'] for t in trials}\n"
        "print('best', sorted(result.best_run))",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = nbclient.NotebookClient(notebook, kernel_name=kernel, timeout=120, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    output = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    assert "best ['power', 'slope']" in output
