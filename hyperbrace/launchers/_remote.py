"""The worker loop an engine runs: :func:`work`, the same trial loop as every hyperbrace worker, on the proxy.

It unseals the plan (the chief's framework variables applied first; a missing module reported in two lines), runs
in a temporary run directory of its own (models go home through the artifact store, so nothing of the chief's
filesystem is needed), tags its trials with the chief's name for this launch (so the chief can fail the running
trial of a launch the engine reports lost), and stops when the chief raises the study's stop flag: its running
trial is then interrupted, failed and queued again, as Ctrl-C does with local workers.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

#: The study system attribute the chief sets (to its run's token) to stop its workers.
STOP_ATTR = "hyperbrace:stop"
#: How often each worker reads the stop flag: one call to the chief each time, so 16 workers polling every second
#: would add a call per trial to 1 s trials; the chief gives stopped workers STOP_GRACE_S (20 s) anyway.
STOP_POLL_S = 2.0


def work(sealed: bytes, index: int, launch: str, stop_token: str) -> dict[str, Any]:
    """Run trials of the sealed plan until no ticket is left. Returns ``{"status": exit status, "error": report}``
    (statuses as in :mod:`hyperbrace._worker`)."""
    from hyperbrace import _worker
    from hyperbrace.envelope import PlanImportError, unseal
    from hyperbrace.trial import set_worker_tag

    try:
        plan = unseal(sealed)
    except PlanImportError as exc:
        return {"status": _worker.EXIT_REPORTED_ERROR, "error": {"type": "PlanImportError", "message": str(exc)}}
    run_dir = Path(tempfile.mkdtemp(prefix="hyperbrace-worker-"))
    set_worker_tag(launch)
    stop = threading.Event()
    try:
        plan = _worker.prepare(plan, run_dir=run_dir)
        storage = plan.storage.open()
        import optuna

        study = optuna.load_study(study_name=plan.study_name, storage=storage)
        reap_launch(study, launch, plan.storage.retries, "its worker was lost (the engine ran its loop again)")
        _watch_stop(study, stop_token, threading.get_ident(), stop)
        error_file = run_dir / "error.json"
        status = _worker.run_plan(plan, index, str(error_file))
        error = json.loads(error_file.read_text()) if error_file.exists() else None
        return {"status": status, "error": error}
    finally:
        stop.set()
        set_worker_tag("")
        shutil.rmtree(run_dir, ignore_errors=True)


def reap_launch(study: Any, launch: str, retries: int, reason: str) -> int:
    """Fail (and queue again) the running trials of ``launch``; returns how many. Idempotent across processes."""
    from optuna.trial import TrialState

    reaped = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if str(trial.user_attrs.get("hb.worker", "")).endswith(f":{launch}"):
            reaped += fail_and_requeue(study, trial, retries, reason)
    return reaped


def fail_and_requeue(study: Any, trial: Any, retries: int, reason: str) -> bool:
    """Fail a running trial whose worker is gone, saying why, and queue its configuration again (``retries``
    times at most). False if it finished meanwhile or another process did this first."""
    import optuna
    from optuna.trial import TrialState

    from hyperbrace.trial import requeue

    try:
        study._storage.set_trial_user_attr(trial._trial_id, "hb.error", reason)
        if study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            if retries:
                requeue(study, trial, max_retry=retries)
            return True
    except optuna.exceptions.UpdateFinishedTrialError:
        pass
    return False


def _watch_stop(study: Any, token: str, thread_id: int, done: threading.Event) -> None:
    """Interrupt the worker's thread (a KeyboardInterrupt, as Ctrl-C) once the chief sets the stop flag.

    Engines run tasks in threads of their own processes (Dask, Ray) where no signal can reach the trial, so the
    interrupt is raised asynchronously in that thread; it lands at the trial's next Python instruction.
    """

    def watch() -> None:
        while not done.wait(STOP_POLL_S):
            try:
                flag = study._storage.get_study_system_attrs(study._study_id).get(STOP_ATTR)
            except Exception:  # noqa: BLE001  (the chief gone: its engine ends this task soon)
                continue
            if flag == token and not done.is_set():
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(KeyboardInterrupt))
                return

    threading.Thread(target=watch, daemon=True, name="hyperbrace-stop-watch").start()
