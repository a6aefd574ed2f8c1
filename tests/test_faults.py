"""Fault injection: kills, Ctrl-Cs and exits at the wrong moment, and what the search looks like afterwards.

Real processes and real signals (the search runs as ``tests/helpers/fault_search.py``); the objectives sleep a
fraction of a second, so each search takes seconds. The moments of the kills come from fixed seeds, so a failure
reproduces. Marked ``faults`` (``pytest -m faults`` runs only these); about 60-90 s on two busy cores.

What must hold after any of it: re-running the search ends with exactly ``max_evals`` counted trials, none RUNNING
or WAITING, and (the trials never fail by themselves) all counted ones COMPLETE.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import psutil
import pytest
from optuna.trial import TrialState

from hyperbrace import minimize, uniform  # noqa: F401  (templates name the distributions)
from hyperbrace.budget import counted_trials
from hyperbrace.samplers import reseed

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "helpers" / "fault_search.py"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _study(directory: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(directory / "faults" / "study.journal"))
    )
    return optuna.load_study(study_name="faults", storage=storage)


def _start(directory: Path, max_evals: int, n_jobs: int, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(directory), str(max_evals), str(n_jobs)], env=_env(**env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _logs(directory: Path) -> int:
    return len(list((directory / "faults" / "logs").glob("trial-*.log")))


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def check_exact_and_complete(directory: Path, max_evals: int) -> optuna.Study:
    study = _study(directory)
    trials = study.get_trials()
    states = [(t.number, t.state.name, t.user_attrs.get("hb.error"), {k: v for k, v in t.system_attrs.items()
                                                                        if k != "hb.oom_kills"})
              for t in trials if t.state != TrialState.COMPLETE]
    states = [t.state.name for t in trials] + states  # the failed ones' reasons, for a failure's message
    assert counted_trials(study) == max_evals, states
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], states
    assert states.count("COMPLETE") == max_evals, states
    for failed in (t for t in trials if t.state == TrialState.FAIL):  # every failed one ran again
        assert any(failed.number in t.system_attrs.get("retry_history", ()) for t in trials), failed
    return study


def _finish(directory: Path, max_evals: int, n_jobs: int) -> None:
    process = _start(directory, max_evals, n_jobs, HB_FAULT_PAUSE="0.05")
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err
    assert "finished" in out


# -- SIGKILL (and Ctrl-C) at random moments ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_jobs, seed", [(1, 11), (2, 12)])
def test_repeated_kills_of_the_search_and_its_workers_then_a_rerun_use_exactly_the_budget(tmp_path, n_jobs, seed):
    rng = random.Random(seed)
    max_evals = 30
    for _ in range(3):
        started = _logs(tmp_path)
        process = _start(tmp_path, max_evals, n_jobs)
        main = psutil.Process(process.pid)
        _wait_for(lambda: _logs(tmp_path) > started or process.poll() is not None, 120, "a trial to start")
        if n_jobs > 1 and rng.random() < 0.7:
            time.sleep(rng.uniform(0.0, 0.6))
            workers = main.children() if process.poll() is None else []
            if workers:
                rng.choice(workers).send_signal(signal.SIGKILL)  # replaced, and its trial runs again
        time.sleep(rng.uniform(0.0, 1.0))
        workers = main.children() if process.poll() is None else []
        # SIGKILL: the workers see their parent die and close their trials; SIGINT (Ctrl-C): it stops them itself.
        process.send_signal(rng.choice([signal.SIGKILL, signal.SIGKILL, signal.SIGINT]))
        process.communicate(timeout=60)
        psutil.wait_procs(workers, timeout=30)
    _finish(tmp_path, max_evals, n_jobs)
    check_exact_and_complete(tmp_path, max_evals)
    assert not list((tmp_path / "faults" / ".workers").glob("*"))  # the killed searches' folders are gone


# -- Ctrl-C inside a slow sampler ------------------------------------------------------------------------------------
def test_ctrl_c_inside_a_slow_ask_leaves_nothing_running_and_the_rerun_is_exact(tmp_path):
    marker = tmp_path / "hanging"
    for variable, number in (("HB_FAULT_SLOW_ASK", 2), ("HB_FAULT_SLOW_RELATIVE", 4)):
        marker.unlink(missing_ok=True)
        process = _start(tmp_path, 8, 1, HB_FAULT_PAUSE="0", HB_FAULT_MARKER=str(marker), **{variable: str(number)})
        _wait_for(lambda: marker.exists() or process.poll() is not None, 120, f"{variable} to hang")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        assert process.returncode != 0 and "finished" not in out, err
        assert "Interrupted" in err and "KeyboardInterrupt" in err
        trials = _study(tmp_path).get_trials()
        assert not [t for t in trials if t.state == TrialState.RUNNING], [t.state for t in trials]
        [hung] = [t for t in trials if t.number == number]
        assert hung.state == TrialState.FAIL and "interrupted" in hung.user_attrs["hb.error"]
        assert [t for t in trials if t.state == TrialState.WAITING][0].system_attrs["retry_history"] == [number]
    _finish(tmp_path, 8, 1)
    check_exact_and_complete(tmp_path, 8)


# -- a worker that crashes -----------------------------------------------------------------------------------------
def crashes_twice(marker_dir):
    x = {{uniform(0, 1)}}
    first = Path(marker_dir, "first")  # the configuration that crashes: the first one any worker runs
    try:
        fd = os.open(first, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, repr(x).encode())
        os.close(fd)
    except FileExistsError:
        pass
    crashes = Path(marker_dir, "crashes")
    count = len(crashes.read_text()) if crashes.exists() else 0
    if first.read_text() == repr(x) and count < 2:  # its first two runs crash their worker in native code
        crashes.write_text("x" * (count + 1))
        print("about to crash", flush=True)
        import ctypes

        ctypes.string_at(0)  # SIGSEGV
    return x


def test_a_crashing_worker_is_explained_and_its_configuration_retried_counting_once(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    result = minimize(crashes_twice, lambda: str(markers), max_evals=4, n_jobs=2, retries=2,
                      directory=tmp_path / "runs", show_progress=False, study_name="crash")
    trials = result.study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 2, [(t.number, t.state.name) for t in trials]
    for trial in failed:
        error = trial.user_attrs["hb.error"]
        assert "SIGSEGV" in error and "about to crash" in error, error  # the signal and the last output
        log = (tmp_path / "runs" / "crash" / "logs" / f"trial-{trial.number:05d}.log").read_text()
        assert "Fatal Python error: Segmentation fault" in log and "crashes_twice" in log  # faulthandler's stack
        assert "crashed with SIGSEGV" in log
    [last] = [t for t in trials if t.system_attrs.get("retry_history") == [f.number for f in failed]]
    assert last.state == TrialState.COMPLETE and last.params == failed[0].params  # the same configuration, once
    assert counted_trials(result.study) == 4 and len(trials) == 6


def test_a_configuration_that_keeps_crashing_stops_after_its_retries(tmp_path):
    # The unit of the rule above, without processes: crashes use up retries, interruptions do not.
    from hyperbrace.recovery import requeue

    study = optuna.create_study()
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    study.tell(trial, state=TrialState.FAIL)
    assert requeue(study, study.trials[-1], max_retry=1, crashed=True)
    for _ in range(5):  # interrupted again and again: always queued once more
        copy = study.ask()
        study.tell(copy, state=TrialState.FAIL)
        assert requeue(study, study.trials[copy.number], max_retry=1, crashed=False)
    copy = study.ask()
    study.tell(copy, state=TrialState.FAIL)
    assert not requeue(study, study.trials[copy.number], max_retry=1, crashed=True)  # a second crash: no more
    assert counted_trials(study) == 1  # the whole series counts once


def unit_float():
    return {{uniform(0, 1)}}


# -- leftovers of killed searches --------------------------------------------------------------------------------------
def test_an_unowned_running_trial_and_a_dead_searchs_folder_are_cleaned_up(tmp_path):
    from hyperbrace.executor import OWNER_FILE
    from hyperbrace.recovery import worker_id

    run_dir = tmp_path / "faults"
    run_dir.mkdir()
    study = optuna.create_study(
        study_name="faults",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(run_dir / "study.journal"))),
    )
    study.ask()  # what an older version (or a kill between ask and claim) left: RUNNING, no owner
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = worker_id().split(":")[0]
    for name, owner in (("dead", f"{host}:{dead.pid}:1"), ("alive", worker_id()), ("elsewhere", "other:1:1")):
        (run_dir / ".workers" / name / "data").mkdir(parents=True)
        (run_dir / ".workers" / name / OWNER_FILE).write_text(owner)
    result = minimize(unit_float, max_evals=3, n_jobs=2, directory=tmp_path, study_name="faults", show_progress=False)
    assert sorted(p.name for p in (run_dir / ".workers").iterdir()) == ["alive", "elsewhere"]
    trials = result.study.get_trials()
    assert trials[0].state == TrialState.FAIL and "without an owner" in trials[0].user_attrs["hb.error"]
    check_exact_and_complete(tmp_path, 3)


# -- SystemExit in a trial ------------------------------------------------------------------------------------------
def exits():
    x = {{uniform(0, 1)}}
    if x > 0.5:
        print("calling sys.exit", flush=True)
        sys.exit(3)
    return x


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_system_exit_in_a_trial_is_a_recorded_failure_and_the_search_goes_on(tmp_path, n_jobs):
    result = minimize(exits, max_evals=8, n_jobs=n_jobs, directory=tmp_path, seed=1,
                      algo="random", show_progress=False, study_name="exits")
    trials = result.study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed and len(trials) == 8 and counted_trials(result.study) == 8
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for trial in failed:
        assert trial.params["x"] > 0.5 and "SystemExit: 3" in trial.user_attrs["hb.error"]
        log = (tmp_path / "exits" / "logs" / f"trial-{trial.number:05d}.log").read_text()
        assert "calling sys.exit" in log and "Traceback" in log and "sys.exit(3)" in log


# -- the host process afterwards --------------------------------------------------------------------------------------
HOST_SCRIPT = textwrap.dedent("""
    import faulthandler, logging, signal, sys, warnings
    from hyperbrace import minimize

    kept = []

    def model():
        x = {{uniform(0, 1)}}
        logging.basicConfig(level=logging.INFO)        # what absl does on Keras' first warning
        kept.append(logging.StreamHandler())           # bound to the trial's stderr
        logging.getLogger("inside").info("logged inside the trial")
        warnings.simplefilter("ignore")
        signal.signal(signal.SIGTERM, lambda *a: None)
        print("printed inside the trial")
        return x

    filters = list(warnings.filters)
    stdout, stderr = sys.stdout, sys.stderr
    term = signal.getsignal(signal.SIGTERM)
    minimize(model, max_evals=3, directory=sys.argv[1], show_progress=False)
    logging.getLogger("after").warning("logged after the search")
    kept[0].emit(logging.LogRecord("kept", logging.WARNING, __file__, 1, "from a trial's handler", None, None))
    print("root handlers", logging.getLogger().handlers)
    print("filters restored", warnings.filters == filters)
    print("streams restored", sys.stdout is stdout and sys.stderr is stderr)
    print("SIGTERM restored", signal.getsignal(signal.SIGTERM) is term)
    print("faulthandler as found", faulthandler.is_enabled() is False)
    warnings.warn("a warning after the search")
""")


def test_logging_warnings_signals_and_streams_work_after_a_search(tmp_path):
    (tmp_path / "host.py").write_text(HOST_SCRIPT)
    run = subprocess.run([sys.executable, "host.py", str(tmp_path / "runs")], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "I/O operation on closed file" not in run.stderr and "Logging error" not in run.stderr, run.stderr
    assert "WARNING:after:logged after the search" not in run.stderr  # basicConfig's handler left with the search
    assert "logged after the search" in run.stderr  # Python's last-resort handler prints it, as before the search
    assert "from a trial's handler" in run.stderr  # a handler a trial bound to its stderr now writes to ours
    assert "root handlers []" in run.stdout
    assert "filters restored True" in run.stdout and "streams restored True" in run.stdout
    assert "SIGTERM restored True" in run.stdout and "faulthandler as found True" in run.stdout
    assert "a warning after the search" in run.stderr
    assert "printed inside the trial" not in run.stdout  # it went to the trial's log
    log = (tmp_path / "runs" / "host.model" / "logs" / "trial-00000.log").read_text()
    assert "printed inside the trial" in log and "logged inside the trial" in log


# -- a seeded sampler instance in several workers --------------------------------------------------------------------
def two_floats():
    x = {{uniform(-1, 1)}}
    y = {{uniform(-1, 1)}}
    time.sleep(0.05)
    return x * x + y * y


def _stream(worker: int, resume: int, n: int) -> list[tuple[float, float]]:
    """What worker ``worker`` of a search resumed at ``resume`` trials draws, predicted without running it."""
    sampler = optuna.samplers.RandomSampler(seed=0)
    if worker or resume:
        reseed(sampler, worker, resume)
    study = optuna.create_study(sampler=sampler)
    draws = []
    for _ in range(n):
        trial = study.ask()
        draws.append((trial.suggest_float("x", -1, 1), trial.suggest_float("y", -1, 1)))
    return draws


def test_a_seeded_sampler_instance_gives_each_worker_and_each_resume_its_own_reproducible_stream(tmp_path):
    def run(max_evals: int) -> optuna.Study:
        return minimize(two_floats, max_evals=max_evals, n_jobs=2, algo=optuna.samplers.RandomSampler(seed=0),
                        directory=tmp_path, study_name="seeded", prune=None, show_progress=False).study

    first = len(run(12).trials)
    second = run(24)  # resumed
    trials = second.get_trials()
    configs = [(t.params["x"], t.params["y"]) for t in trials]
    assert len(set(configs)) == 24  # no configuration twice, across workers and across the resume
    by_worker: dict[str, list[tuple[float, float]]] = {}
    for trial in trials:
        by_worker.setdefault(trial.user_attrs["hb.worker"], []).append((trial.params["x"], trial.params["y"]))
    streams = [_stream(w, r, 24) for r in (0, 12) for w in (0, 1)]
    for drawn in by_worker.values():  # each worker drew a prefix of its own predicted stream: reproducible
        assert any(stream[: len(drawn)] == drawn for stream in streams), drawn
    assert len(by_worker) >= 2 and first == 12


# -- Ctrl-C while the journal's lock changes hands -----------------------------------------------------------------
@pytest.mark.parametrize("moment", ["acquire", "release"])
def test_ctrl_c_while_the_journal_lock_changes_hands_is_a_clean_keyboard_interrupt(tmp_path, moment):
    # A real SIGINT, sent from inside Optuna's link lock at the moment it takes or removes its link: without
    # holding it back, Optuna's release turned it into FileNotFoundError (an interrupted trial was then recorded as a
    # failed one and never run again), and its acquire removed a link another process held.
    from hyperbrace.journal import JournalLock

    journal = str(tmp_path / "study.journal")
    lock = JournalLock(journal)
    original = getattr(lock._link, moment)

    def interrupted(*args):
        os.kill(os.getpid(), signal.SIGINT)
        return original(*args)

    setattr(lock._link, moment, interrupted)
    with pytest.raises(KeyboardInterrupt):
        lock.acquire()
        lock.release()
    assert not os.path.lexists(journal + ".lock")  # the lock is free: nobody waits for a dead link
    assert not list(tmp_path.glob("*.rename"))
    setattr(lock._link, moment, original)
    lock.acquire()  # and it can be taken again at once
    lock.release()


# -- a configuration that crashes the search's own process -----------------------------------------------------------
CRASH_SCRIPT = textwrap.dedent("""
    import ctypes, os, sys
    from pathlib import Path
    from hyperbrace import minimize

    def model():
        x = {{uniform(0, 1)}}
        first = Path(sys.argv[1], "first")  # the first configuration ever run crashes the process, every time
        try:
            fd = os.open(first, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(fd, repr(x).encode())
            os.close(fd)
        except FileExistsError:
            pass
        if first.read_text() == repr(x):
            print("about to crash", flush=True)
            ctypes.string_at(0)
        return x

    minimize(model, max_evals=4, directory=sys.argv[1], study_name="faults", show_progress=False, seed=0)
    print("finished")
""")


def test_a_configuration_that_crashes_the_search_itself_is_given_up_after_its_retries(tmp_path):
    (tmp_path / "crash.py").write_text(CRASH_SCRIPT)
    codes = []
    for _ in range(3):
        run = subprocess.run([sys.executable, "crash.py", str(tmp_path)], cwd=tmp_path, env=_env(),
                             capture_output=True, text=True, timeout=120)
        codes.append(run.returncode)
    assert codes == [-signal.SIGSEGV, -signal.SIGSEGV, 0], codes  # crashed, retried once and crashed, gave up
    assert "finished" in run.stdout
    study = _study(tmp_path)
    trials = study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 2 and failed[0].params == failed[1].params, [(t.number, t.state.name) for t in trials]
    for trial in failed:
        assert "crashed" in trial.user_attrs["hb.error"] and "about to crash" in trial.user_attrs["hb.error"]
        log = (tmp_path / "faults" / "logs" / f"trial-{trial.number:05d}.log").read_text()
        assert "Fatal Python error: Segmentation fault" in log and "in model" in log
    assert counted_trials(study) == 4 and sum(t.state == TrialState.COMPLETE for t in trials) == 3
