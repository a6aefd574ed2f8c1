"""The chief of a cluster run: serve the study, issue the budget, start worker loops on the engine, watch them.

1. Tickets: the chief queues one waiting trial per trial left (:mod:`hyperbrace.tickets`), so workers without a
   shared lock still run exactly ``max_evals``.
2. The gRPC server (:class:`~hyperbrace.launchers.proxy.ProxyServer`) serves the study and the artifact store.
3. ``n_jobs`` worker loops (:func:`~hyperbrace.launchers._remote.work`) are submitted to the engine, each with the
   sealed plan (:mod:`hyperbrace.envelope`) and a launch name.
4. Watching: the progress bar follows the study; a loop the engine reports lost (node gone, job cancelled,
   process killed) has its running trial failed and queued again, and is replaced while work remains; a loop that
   reports an error that would fail every trial (a template error, the first trials all failing alike, the plan
   not loading) stops the search and the error is raised here; Ctrl-C sets the study's stop flag, the loops
   interrupt their trials (failed and queued again, so running the search again resumes it), and after a grace
   period the engine cancels what is left.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hyperbrace import _worker
from hyperbrace.artifacts import chief_store
from hyperbrace.budget import count_used
from hyperbrace.display import Progress
from hyperbrace.envelope import seal
from hyperbrace.executor import WorkerError, error_from_report
from hyperbrace.launchers import Launcher
from hyperbrace.launchers._remote import STOP_ATTR, fail_and_requeue, reap_launch, work
from hyperbrace.launchers.proxy import GrpcArtifactStore, ProxyServer
from hyperbrace.search import PROXY_BEAT_ATTR, PROXY_BEAT_S, REAP_INTERVAL_S, SearchPlan, reap_dead_trials
from hyperbrace.storage import GRPC_SCHEME, RunStorage
from hyperbrace.tickets import issue_tickets

POLL_INTERVAL_S = 0.5
#: How long interrupted workers get to close their running trials before the engine cancels them.
STOP_GRACE_S = 20.0
#: How long a chief whose workers joined by themselves keeps serving after the last trial.
LINGER_S = 3.0
#: A trial run through the proxy whose heartbeat count has not moved for this long is failed and queued again.
SILENT_S = 4 * PROXY_BEAT_S


@dataclasses.dataclass
class _Launch:
    name: str
    slot: int
    handle: Any


def run_on_cluster(plan: SearchPlan, launcher: Launcher, progress: Progress | None = None) -> None:
    """Run ``plan``'s trials in ``plan.n_jobs`` worker loops on ``launcher``'s engine (see the module docstring)."""
    storage = plan.storage.open()
    study = optuna.load_study(study_name=plan.study_name, storage=storage)
    issue_tickets(study, plan.max_evals)
    waiting = _waiting(study.get_trials(deepcopy=False))
    if waiting == 0:
        return
    n_workers = max(1, min(plan.n_jobs, waiting))
    starts_workers = getattr(launcher, "starts_workers", True)
    launcher.open(n_workers)
    server = None
    launches: dict[str, _Launch] = {}
    token = uuid.uuid4().hex[:12]
    try:
        bind, advertise = launcher.addresses()
        server = ProxyServer(storage, chief_store(plan.storage.run_dir), threads=max(16, 4 * n_workers))
        address = server.start(bind, getattr(launcher, "port", 0), advertise)
        worker_plan = dataclasses.replace(
            plan,
            storage=RunStorage(Path("."), f"{GRPC_SCHEME}{address}", plan.storage.retries),
            settings=dataclasses.replace(plan.settings, artifacts=GrpcArtifactStore(address)),
            tickets=True,
            n_jobs=max(plan.n_jobs, 2),  # several processes: a sampler that expects parallel trials
        )
        sealed = seal(worker_plan, extra_environment=launcher.worker_environment(n_workers))
        started = [0]

        def start(slot: int) -> None:
            name = f"{token}-{started[0]}"
            started[0] += 1
            launches[name] = _Launch(name, slot, launcher.submit(work, sealed, slot, name, token))

        if starts_workers:
            for slot in range(n_workers):
                start(slot)
        else:
            print(f"hyperbrace: serving study {plan.study_name!r} at {GRPC_SCHEME}{address}; start workers with\n"
                  f"    hyperbrace worker --storage {GRPC_SCHEME}{address} --study {plan.study_name}",
                  file=sys.stderr, flush=True)
        _watch(plan, study, launches, start if starts_workers else None, progress)
        if not starts_workers:
            time.sleep(LINGER_S)  # workers that joined by themselves read the study once more before they leave
    except BaseException:
        _stop(study, launches, token, plan.storage.retries)
        raise
    finally:
        try:
            reap_dead_trials(study, plan.storage.retries)
            _show_progress(progress, study)
        finally:
            if server is not None:
                server.stop()
            launcher.close()


def _watch(plan: SearchPlan, study: optuna.Study, launches: dict[str, _Launch], start: Any,
           progress: Progress | None) -> None:
    """Until no trial is left to take or running. ``start`` is None when workers join by themselves (Serve)."""
    max_replacements = max(4, 2 * len(launches))
    replacements = 0
    last_reaped = time.monotonic()
    beats = _BeatWatch()
    while True:
        time.sleep(POLL_INTERVAL_S)
        _show_progress(progress, study)
        if time.monotonic() - last_reaped >= REAP_INTERVAL_S:
            reap_dead_trials(study, plan.storage.retries)  # a loop's process that died on this machine
            beats.reap_silent(study, plan.storage.retries)  # a proxy worker whose heartbeat stopped
            last_reaped = time.monotonic()
        for launch in [launch for launch in launches.values() if launch.handle.done()]:
            del launches[launch.name]
            try:
                outcome = launch.handle.result()
                lost = None
            except Exception as exc:  # noqa: BLE001  (the engine lost the loop: a dead node, a cancelled job)
                outcome, lost = None, exc
            if outcome is not None and outcome.get("status") == _worker.EXIT_REPORTED_ERROR:
                raise error_from_report(outcome.get("error") or {}, f"worker {launch.slot} ({launch.name})")
            if outcome is not None and outcome.get("status") == _worker.EXIT_OK:
                continue
            reason = f"its worker was lost ({type(lost).__name__}: {lost})" if lost else "its worker was interrupted"
            reap_launch(study, launch.name, plan.storage.retries, reason[:500])
            if _work_remains(plan, study):
                if replacements >= max_replacements:
                    raise WorkerError(f"{replacements + 1} worker loops were lost (the last: {reason}); stopping")
                replacements += 1
                start(launch.slot)
        if not launches:
            trials = study.get_trials(deepcopy=False)
            if not _work_remains(plan, study) and not any(t.state == TrialState.RUNNING for t in trials):
                return  # (a worker that joined by itself may still be running a trial: wait for it)
            if start is None or not _work_remains(plan, study):
                continue
            # Work appeared after the last loop left (a lost loop's trial was queued again meanwhile).
            if replacements >= max_replacements:
                raise WorkerError(f"{replacements} worker loops were replaced and trials remain; stopping")
            replacements += 1
            start(0)


class _BeatWatch:
    """Fails running trials whose proxy heartbeat (``hb.beat``, see hyperbrace.search) has not moved for
    :data:`SILENT_S` by this process's clock (no clock is compared across machines)."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[Any, float]] = {}

    def reap_silent(self, study: optuna.Study, retries: int) -> None:
        now = time.monotonic()
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        self.seen = {k: v for k, v in self.seen.items() if k in {t._trial_id for t in running}}
        for trial in running:
            beat = trial.system_attrs.get(PROXY_BEAT_ATTR)
            if beat is None:
                continue  # not run through the proxy: its worker's own storage watches it
            last = self.seen.get(trial._trial_id)
            if last is None or last[0] != beat:
                self.seen[trial._trial_id] = (beat, now)
            elif now - last[1] > SILENT_S:
                fail_and_requeue(study, trial, retries, f"its worker's heartbeat stopped {SILENT_S:.0f} s ago")


def _work_remains(plan: SearchPlan, study: optuna.Study) -> bool:
    if plan.deadline is not None and time.time() >= plan.deadline:
        return False
    return _waiting(study.get_trials(deepcopy=False)) > 0


def _waiting(trials: list[optuna.trial.FrozenTrial]) -> int:
    return sum(t.state == TrialState.WAITING for t in trials)


def _show_progress(progress: Progress | None, study: optuna.Study) -> None:
    if progress is None:
        return
    trials = study.get_trials(deepcopy=False)
    values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    # Tickets not yet claimed count in the budget but are not done.
    progress.advance(count_used(trials) - _waiting(trials), min(values) if values else None)


def _stop(study: optuna.Study, launches: dict[str, _Launch], token: str, retries: int) -> None:
    """Ask every loop to stop (its running trial is failed and queued again); cancel those that do not."""
    if not launches:
        return
    try:
        study._storage.set_study_system_attr(study._study_id, STOP_ATTR, token)
    except Exception:  # noqa: BLE001
        pass
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and not all(launch.handle.done() for launch in launches.values()):
        time.sleep(0.2)
    for launch in launches.values():
        if not launch.handle.done():
            try:
                launch.handle.cancel()
            except Exception:  # noqa: BLE001
                pass
        reap_launch(study, launch.name, retries, "its worker was stopped (the search was interrupted)")
