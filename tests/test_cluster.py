"""cluster=: real engines started locally (Ray, a Dask LocalCluster with processes, submitit's local executor), the
gRPC proxy with workers that cannot read the run directory, models home through the artifact store, exact budgets,
a worker killed mid-trial on each engine, reproducible=True across worker counts, and the worker's two-line
import error.

Each engine is started once per module and the searches are a few 0.2 s trials; the engines' tests are marked slow
(end to end: Ray's start alone takes 15-45 s on this project's two shared cores).
"""

from __future__ import annotations

import builtins
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hyperbrace import minimize, uniform  # noqa: F401  (templates name the distributions)
from hyperbrace.budget import counted_trials
from hyperbrace.result import SearchResult


def quick(marker_dir):
    """A 0.2 s trial whose model is a dict; the first trial to find no marker kills its own process."""
    x = {{uniform(-1, 1)}}
    marker = Path(marker_dir) / "killed"
    if marker_dir and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.2)
    return {"loss": x * x, "model": {"x": x, "pid": os.getpid()}, "pid": os.getpid()}


def _check_search(result, max_evals: int, killed: bool) -> None:
    trials = result.study.trials
    assert counted_trials(result.study) == max_evals
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == max_evals
    assert os.getpid() not in {t.user_attrs["pid"] for t in complete}  # the trials ran elsewhere
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if killed:
        # The killed worker's trial was failed and run again (with its configuration) by another worker.
        assert len(failed) == 1
        assert any(word in failed[0].user_attrs["hb.error"] for word in ("lost", "died"))
        assert any(t.params == failed[0].params for t in complete)
    else:
        assert not failed
    # The models came home: a fresh result on the chief's run directory loads the best one.
    fresh = SearchResult(result.study, result.directory)
    assert fresh.best_model["x"] == pytest.approx(fresh.best_run["x"])
    assert (Path(result.directory) / "artifacts").is_dir()


# -- Ray -------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    original_print = builtins.print
    for attempt in range(2):
        try:  # Ray gives its node 30 s to start (hard-coded); on a loaded machine a second try may be needed
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}})
            break
        except Exception:
            ray.shutdown()
            if attempt:
                raise
    yield ray
    ray.shutdown()
    builtins.print = original_print  # Ray's driver may patch print (ray.experimental.tqdm_ray) while connected


@pytest.mark.slow  # a real engine's processes: tens of seconds on a busy machine
def test_ray_runs_exact_budget_and_replaces_a_killed_worker(ray_cluster, tmp_path):
    from hyperbrace.launchers import Ray

    host_print = builtins.print
    result = minimize(quick, lambda: str(tmp_path), max_evals=6, n_jobs=2, cluster=Ray(num_cpus=1),
                      directory=tmp_path / "runs", show_progress=False, seed=0)
    _check_search(result, 6, killed=True)
    assert builtins.print is host_print  # the host process is left as found (Ray's driver patches print)


# -- Dask ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.slow  # a real engine's processes: tens of seconds on a busy machine
def test_dask_runs_exact_budget_and_survives_a_killed_worker(dask_client, tmp_path):
    result = minimize(quick, lambda: str(tmp_path), max_evals=6, n_jobs=2, cluster=dask_client,
                      directory=tmp_path / "runs", show_progress=False, seed=0)
    _check_search(result, 6, killed=True)


# -- submitit --------------------------------------------------------------------------------------------------------
@pytest.mark.slow  # a real engine's processes: tens of seconds on a busy machine
def test_submitit_local_executor_runs_exact_budget_and_replaces_a_killed_job(tmp_path):
    submitit = pytest.importorskip("submitit")
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    executor.update_parameters(timeout_min=5)
    result = minimize(quick, lambda: str(tmp_path), max_evals=5, n_jobs=2, cluster=executor,
                      directory=tmp_path / "runs", show_progress=False, seed=0)
    _check_search(result, 5, killed=True)


# -- the proxy: workers that cannot read the run directory -----------------------------------------------------------
class OtherUserExecutor:
    """Runs each submitted call in a fresh process as user ``nobody``, who cannot read the chief's run directory."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch

    def submit(self, fn, *args) -> Future:
        import cloudpickle

        future: Future = Future()
        job = Path(tempfile.mkdtemp(dir=self.scratch))
        os.chmod(job, 0o777)
        (job / "call.pickle").write_bytes(cloudpickle.dumps((fn, args)))
        code = ("import pickle, sys; fn, args = pickle.load(open(sys.argv[1] + '/call.pickle', 'rb')); "
                "pickle.dump(fn(*args), open(sys.argv[1] + '/result.pickle', 'wb'))")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                   sys.executable, "-c", code, str(job)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HOME": str(job)}

        def run() -> None:
            done = subprocess.run(command, env=env, cwd=job, capture_output=True, text=True)
            if done.returncode == 0:
                future.set_result(pickle.loads((job / "result.pickle").read_bytes()))
            else:
                future.set_exception(RuntimeError(f"worker exited {done.returncode}: {done.stderr[-2000:]}"))

        threading.Thread(target=run, daemon=True).start()
        return future


def reads_nothing_of_the_chief(run_dir):
    x = {{uniform(-1, 1)}}
    return {"loss": x * x, "model": {"x": x}, "pid": os.getpid(), "sees_run_dir": os.access(run_dir, os.R_OK)}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the workers as another user (setpriv)")
def test_proxy_workers_without_access_to_the_run_directory(tmp_path):
    from hyperbrace.launchers import Executor

    runs = tmp_path / "runs"
    runs.mkdir()
    os.chmod(runs, 0o700)  # root's: user nobody cannot enter it
    scratch = Path(tempfile.mkdtemp())
    os.chmod(scratch, 0o755)
    result = minimize(reads_nothing_of_the_chief, lambda: str(runs), max_evals=4, n_jobs=2,
                      cluster=Executor(OtherUserExecutor(scratch)), directory=runs, show_progress=False, seed=0)
    trials = result.study.trials
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert not any(t.user_attrs["sees_run_dir"] for t in trials)
    assert result.best_model["x"] == pytest.approx(result.best_run["x"])  # downloaded from the artifact store


# -- the worker's environment and its two-line import error -----------------------------------------------------------
def test_missing_module_is_reported_in_two_lines(tmp_path):
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    from hyperbrace.executor import WorkerError

    sys.path.insert(0, str(tmp_path))
    (tmp_path / "vanishing_dep.py").write_text("VALUE = 1\n")
    (tmp_path / "vanishing_model.py").write_text(
        "import vanishing_dep\n"
        "from hyperbrace import uniform\n"
        "def model():\n"
        "    return {{uniform(0, 1)}} * vanishing_dep.VALUE\n"
    )
    try:
        import vanishing_model

        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            # The model's module needs a module that this "machine" lacks.
            (tmp_path / "vanishing_dep.py").rename(tmp_path / "gone.py")
            with pytest.raises(WorkerError) as info:
                minimize(vanishing_model.model, max_evals=2, cluster=pool, directory=tmp_path / "runs",
                         show_progress=False)
    finally:
        sys.path.remove(str(tmp_path))
    message = str(info.value).split("could not run trials:\n", 1)[1]
    lines = message.splitlines()
    assert len(lines) == 2
    assert "no module named 'vanishing_dep'" in lines[0]
    assert lines[1].startswith("environment: the chief ran with KERAS_BACKEND=")


# -- reproducible=True -----------------------------------------------------------------------------------------------
def jittery():
    x = {{uniform(-2, 2)}}
    y = {{uniform(-2, 2)}}
    time.sleep(0.05 + (os.getpid() % 7) * 0.03)  # worker-dependent durations: finishing order varies
    return (x - 1) ** 2 + (y + 0.5) ** 2


def _configs(result):
    return [(t.number, round(t.params["x"], 12), round(t.params["y"], 12))
            for t in sorted(result.study.trials, key=lambda t: t.number)]


def test_reproducible_gives_the_same_configurations_for_1_and_3_workers(tmp_path):
    common = dict(max_evals=14, seed=7, reproducible=4, show_progress=False, prune=None)
    one = minimize(jittery, n_jobs=1, directory=tmp_path / "one", **common)
    three = minimize(jittery, n_jobs=3, directory=tmp_path / "three", **common)
    assert len(three.study.trials) == 14
    assert len({t.user_attrs.get("hb.worker") for t in three.study.trials}) >= 2  # really in parallel
    assert _configs(one) == _configs(three)
    other = minimize(jittery, n_jobs=1, directory=tmp_path / "other", **{**common, "seed": 8})
    assert _configs(other) != _configs(one)


# -- hyperbrace worker: through the chief's proxy (Serve), or on the journal from a second terminal --------------------
CHIEF = """
import os, sys, time
from pathlib import Path
from hyperbrace import minimize, uniform
from hyperbrace.launchers import Serve

os.environ["HYPERBRACE_PROBE"] = "set-by-the-chief"  # a framework-style variable: carried to the workers

def model(meeting):
    x = {{uniform(-1, 1)}}
    Path(meeting, str(os.getpid())).touch()
    deadline = time.time() + 90
    while len(os.listdir(meeting)) < 2 and time.time() < deadline:  # wait until both processes have a trial
        time.sleep(0.1)
    return {"loss": x * x, "model": {"x": x}, "pid": os.getpid(), "probe": os.environ.get("HYPERBRACE_PROBE")}

cluster = Serve(port=int(sys.argv[2]), host="127.0.0.1", bind="127.0.0.1") if sys.argv[2] != "0" else None
meeting = sys.argv[3]
result = minimize(model, lambda: meeting, max_evals=4, study_name="joined", directory=sys.argv[1],
                  cluster=cluster, show_progress=False)
print("BEST", result.best_model["x"] == result.best_run["x"])
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env_without_probe() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYPERBRACE_PROBE"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["HYPERBRACE_PLAN_KEY"] = "test-cluster-key"  # the chief signs its plan, the worker checks it (security.md)
    return env


@pytest.mark.slow  # a real engine's processes: tens of seconds on a busy machine
@pytest.mark.parametrize("through", ["proxy", "journal"])
def test_hyperbrace_worker_joins_through_the_proxy_or_the_journal(tmp_path, through):
    runs, meeting, elsewhere = tmp_path / "runs", tmp_path / "meeting", tmp_path / "elsewhere"
    meeting.mkdir()
    elsewhere.mkdir()
    (tmp_path / "chief.py").write_text(CHIEF)
    port = _free_port() if through == "proxy" else 0
    chief = subprocess.Popen([sys.executable, "chief.py", str(runs), str(port), str(meeting)], cwd=tmp_path,
                             env=_env_without_probe(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    storage = f"grpc://127.0.0.1:{port}" if through == "proxy" else str(runs / "joined")
    if through == "journal":
        deadline = time.time() + 60
        while not (runs / "joined" / "study.journal").exists() and time.time() < deadline:
            time.sleep(0.2)
    # Through the proxy the chief runs no trial: the worker runs two processes. On the journal, chief and worker
    # run one each.
    worker = subprocess.run(
        [sys.executable, "-m", "hyperbrace.cli", "worker", "--storage", storage, "--study", "joined", "--wait", "60",
         "--directory", str(elsewhere), "--n-jobs", "2" if through == "proxy" else "1"],
        cwd=elsewhere, env=_env_without_probe(), capture_output=True, text=True, timeout=180,
    )
    out, err = chief.communicate(timeout=180)
    assert worker.returncode == 0, worker.stderr
    assert chief.returncode == 0, err
    assert "BEST True" in out  # the chief loads the best model, wherever it was trained
    study = optuna.load_study(study_name="joined", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(runs / "joined" / "study.journal"))))
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    pids = {t.user_attrs["pid"] for t in trials}
    assert len(pids) == 2
    if through == "proxy":
        assert chief.pid not in pids
    # The worker ran with the chief's framework variables, which its own environment lacked.
    assert {t.user_attrs["probe"] for t in trials} == {"set-by-the-chief"}


def test_a_joined_worker_takes_a_budget_the_chief_raised(tmp_path):
    from hyperbrace.search import BUDGET_ATTR
    from hyperbrace.executor import published_plan
    from hyperbrace import _worker

    first = minimize(quick, lambda: "", max_evals=3, directory=tmp_path, study_name="raised", show_progress=False)
    plan = _worker.prepare(published_plan(first.study, run_dir=first.directory))  # what a worker read: 3 trials
    assert plan.max_evals == 3
    # The chief runs the search again with max_evals=5 (it records the new budget), after the worker joined.
    first.study._storage.set_study_system_attr(first.study._study_id, BUDGET_ATTR, 5)
    outcomes = plan.run_trials(worker_index=1)
    assert len(outcomes) == 2 and counted_trials(first.study) == 5


def test_a_proxy_trial_whose_heartbeat_stops_is_failed_and_queued_again(monkeypatch):
    from hyperbrace.launchers import _chief
    from hyperbrace.search import PROXY_BEAT_ATTR

    monkeypatch.setattr(_chief, "SILENT_S", 0.3)
    study = optuna.create_study()
    silent, beating, local = study.ask(), study.ask(), study.ask()
    for trial in (silent, beating, local):
        trial.suggest_float("x", 0, 1)
    study._storage.set_trial_system_attr(silent._trial_id, PROXY_BEAT_ATTR, 0)
    study._storage.set_trial_system_attr(beating._trial_id, PROXY_BEAT_ATTR, 0)
    watch = _chief._BeatWatch()
    watch.reap_silent(study, retries=1)
    time.sleep(0.5)
    study._storage.set_trial_system_attr(beating._trial_id, PROXY_BEAT_ATTR, 1)  # this one's worker is alive
    watch.reap_silent(study, retries=1)
    states = {t.number: t.state for t in study.trials}
    assert states[silent.number] == TrialState.FAIL
    assert states[beating.number] == TrialState.RUNNING
    assert states[local.number] == TrialState.RUNNING  # no proxy heartbeat: not this watch's to judge
    retry = [t for t in study.trials if t.state == TrialState.WAITING]
    assert len(retry) == 1 and retry[0].params == study.trials[silent.number].params
    assert "heartbeat stopped" in study.trials[silent.number].user_attrs["hb.error"]
