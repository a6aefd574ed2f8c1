"""One search's plan, and the trial loop that every process running it (this one, or a worker) follows.

A :class:`SearchPlan` holds everything needed to run trials of a search: the compiled model, the data function,
the storage, the algorithm and pruner, the settings and the budget. It pickles (with cloudpickle), so worker
processes and machines run exactly the same loop: take a trial under the budget lock, run it, record it.
"""

from __future__ import annotations

import copy
import inspect
import math
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from hyperbrace import _process_state
from hyperbrace.budget import budget_lock, count_used, is_reused
from hyperbrace.preflight import check_arguments, is_configuration_independent
from hyperbrace.recovery import claim, reap_dead_trials, release
from hyperbrace.samplers import make_pruner, make_sampler, reseed
from hyperbrace.storage import RunStorage
from hyperbrace.tickets import claim_ticket
from hyperbrace.template import CompiledModel
from hyperbrace.trial import TrialOutcome, TrialSettings, execute

__all__ = ["SearchPlan", "TrialFailedError", "FAILURE_STREAK", "reap_dead_trials"]

#: Trials run through a chief's gRPC proxy count their heartbeats in this system attribute, every PROXY_BEAT_S;
#: the chief fails (and queues again) a running trial whose count has not moved for a while (its worker is gone).
PROXY_BEAT_ATTR = "hb.beat"
PROXY_BEAT_S = 10.0
#: The study system attribute holding the search's current ``max_evals`` (the chief sets it on every run).
BUDGET_ATTR = "hyperbrace:max_evals"
#: If this many first trials of a search all fail with the same error, the search stops and raises it.
FAILURE_STREAK = 3
#: How often a worker looks for trials whose process died (two queries on a database, so not before every trial;
#: the process that starts local workers also looks as soon as one of them dies).
REAP_INTERVAL_S = 5.0


class TrialFailedError(RuntimeError):
    """The first trials all failed with the same error: almost surely a bug, not a bad configuration."""


@dataclass
class SearchPlan:
    model: CompiledModel
    data: Callable[..., Any] | None
    data_args: Any
    storage: RunStorage
    study_name: str
    algo: Any = "auto"
    seed: int | None = None
    prune: Any = None
    settings: TrialSettings = None  # type: ignore[assignment]
    max_evals: int = 50
    deadline: float | None = None  #: a ``time.time()`` after which no new trial starts
    n_jobs: int = 1
    #: ``reproducible=``: trials are sampled in batches of this many from the earlier batches only (0: off).
    reproducible: int = 0
    #: Take trials only by claiming the chief's waiting trials (:mod:`hyperbrace.tickets`) instead of under the
    #: budget lock: workers that reach the study through the gRPC proxy have no lock to share.
    tickets: bool = False
    #: how many trials the study had when this run began (set for worker processes, so that all of them seed
    #: their samplers alike); ``None``: read from the study when it is opened
    resume: int | None = None
    #: ``callbacks=``: called as ``callback(study, frozen_trial)`` after each trial, in the process that ran it
    #: (Optuna's signature; ``study.stop()`` in one stops that process from taking more trials).
    callbacks: tuple[Callable[[optuna.Study, optuna.trial.FrozenTrial], None], ...] = ()
    _data_cache: Any = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_data_cache"] = None  # each process calls data() itself (or maps the shared arrays)
        return state

    # -- study -----------------------------------------------------------------------------------------------------
    def open_study(self, worker_index: int = 0, storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
        storage = storage or self.storage.open()
        # A resumed run or another worker must not replay the same random draws as the first run (or worker).
        resume = self.resume
        if resume is None and (self.seed is not None or isinstance(self.algo, optuna.samplers.BaseSampler)):
            try:
                resume = len(optuna.load_study(study_name=self.study_name, storage=storage).trials)
            except KeyError:
                resume = 0
        seed = self.seed
        if seed is not None:
            seed = seed + resume + 100_003 * worker_index
        sampler = make_sampler(self.algo, seed, self.model.sites, parallel=self.n_jobs > 1)
        if sampler is self.algo and (worker_index or resume):
            # A sampler instance: its state is the same in every worker (copied with the plan), and the same at
            # every start of a script; give each worker and each resume its own reproducible stream.
            # (A copy: the caller's instance is left as it was.)
            sampler = reseed(copy.deepcopy(sampler), worker_index, resume)
        pruner = make_pruner(self.prune)
        if self.reproducible:
            from hyperbrace.reproducible import ReproduciblePruner, ReproducibleSampler

            sites = self.model.sites
            sampler = ReproducibleSampler(lambda s: make_sampler(self.algo, s, sites), self.seed, self.reproducible)
            pruner = ReproduciblePruner(pruner, self.reproducible)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.create_study(
                storage=storage, study_name=self.study_name, sampler=sampler, pruner=pruner,
                direction="minimize", load_if_exists=True,
            )

    # -- data ------------------------------------------------------------------------------------------------------
    def load_data(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Call ``data()`` once per process; its result becomes the model's arguments."""
        if self._data_cache is None:
            args, kwargs = arguments_from(call_data(self.data, self.data_args))
            if self.data is not None:
                check_arguments(self.model, args, kwargs, self.data)  # before the first trial, not in every one
            self._data_cache = args, kwargs
        return self._data_cache

    def call_model(self, model: CompiledModel) -> Any:
        args, kwargs = self.load_data()
        return call_with_data(model, args, kwargs)

    # -- the loop --------------------------------------------------------------------------------------------------
    def run_trials(
        self,
        worker_index: int = 0,
        on_outcome: Callable[[TrialOutcome], None] | None = None,
        study: optuna.Study | None = None,
    ) -> list[TrialOutcome]:
        """Take and run trials until the budget or the deadline is used up. Returns this process's outcomes.

        The process is left as found (logging, warnings, signal handlers, ``sys.stdout``; see
        :mod:`hyperbrace._process_state`), and no trial is left RUNNING by an interrupt at any point
        (:mod:`hyperbrace.recovery`).
        """
        with _process_state.preserved():
            return self._run_trials(worker_index, on_outcome, study)

    def _run_trials(
        self,
        worker_index: int,
        on_outcome: Callable[[TrialOutcome], None] | None,
        study: optuna.Study | None,
    ) -> list[TrialOutcome]:
        study = study or self.open_study(worker_index)
        self.load_data()
        outcomes: list[TrialOutcome] = []
        lock_path = self.storage.budget_lock_path
        last_reaped = -math.inf
        while self.deadline is None or time.time() < self.deadline:
            claimed: list[int] = []
            reap = time.monotonic() - last_reaped >= REAP_INTERVAL_S
            if reap:
                last_reaped = time.monotonic()
            try:
                if self.tickets:
                    if reap:
                        reap_dead_trials(study, self.storage.retries, self.settings.logs_dir)
                    # Workers start their claims at their own index (not with reproducible=True: see claim_ticket)
                    trial = claim_ticket(study, 0 if self.reproducible else worker_index)
                    if trial is not None:
                        claimed.append(trial._trial_id)
                else:
                    trial = self._ask(study, lock_path, claimed, reap)
                if trial is None:
                    break
                with _heartbeat(study, trial):
                    outcome = execute(study, trial, self.model, self.call_model, self.settings)
            except BaseException as exc:
                # Interrupted between claiming the trial and running it (or anywhere execute() did not close it):
                # not the configuration's doing, so it runs again.
                reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"the search stopped ({exc!r:.300})"
                for trial_id in claimed:
                    try:
                        release(study, trial_id, reason)
                    except Exception:  # noqa: BLE001  (a full disk, a lost database: the next reaper closes it)
                        pass
                raise
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
            if self.callbacks and run_callbacks(study, trial, self.callbacks):
                break
            check_failure_streak(study, outcomes, self.model)
        return outcomes

    def _ask(self, study: optuna.Study, lock_path: Any, claimed: list[int], reap: bool) -> optuna.Trial | None:
        """A new trial under the budget lock (owned from the start: :func:`hyperbrace.recovery.claim`), or ``None``
        when the budget is used up. ``reap``: close dead processes' and ownerless trials first."""
        with budget_lock(lock_path, self.storage.url):
            if reap:
                # Under the lock: every claimer holds it from creating a trial to owning it, so a RUNNING trial
                # without an owner here is one that a killed search (or an older version) left behind.
                reap_dead_trials(study, self.storage.retries, self.settings.logs_dir, unowned=True)
            # One read of the study while the lock is held (every other worker waits for it).
            trials = study.get_trials(deepcopy=False)
            # A trial queued again (its worker died) is counted already but still has to run: claim() takes it.
            queued = any(t.state == TrialState.WAITING for t in trials)
            if count_used(trials) >= self.max_evals and not queued:
                # A chief that ran the search again with a larger max_evals raised the study's budget since this
                # process read its plan: take the new one.
                budget = study._storage.get_study_system_attrs(study._study_id).get(BUDGET_ATTR, 0)
                if count_used(trials) >= max(self.max_evals, budget):
                    return None
                self.max_evals = budget
            return claim(study, claimed)


def run_callbacks(study: optuna.Study, trial: optuna.Trial, callbacks: tuple[Any, ...]) -> bool:
    """Call each callback with the study and the finished trial; True when one called ``study.stop()``."""
    frozen = study._storage.get_trial(trial._trial_id)
    local = study._thread_local
    previous, local.in_optimize_loop = local.in_optimize_loop, True  # Study.stop() works only inside "optimize"
    study._stop_flag = False
    try:
        for callback in callbacks:
            callback(study, frozen)
    finally:
        local.in_optimize_loop = previous
    return bool(study._stop_flag)


def call_data(data: Callable[..., Any] | None, data_args: Any) -> Any:
    if data is None:
        return None
    if data_args is None:
        return data()
    if isinstance(data_args, dict):
        return data(**data_args)
    return data(*data_args)


def arguments_from(data: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``data()``'s value as the model's arguments: tuple -> positional, dict -> keywords, other -> one argument."""
    if data is None:
        return (), {}
    if isinstance(data, tuple):
        return data, {}
    if isinstance(data, dict):
        return (), data
    return (data,), {}


def call_with_data(model: CompiledModel, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call the model with data()'s value; a model that takes no parameters is called without it."""
    try:
        takes_arguments = bool(inspect.signature(model.original).parameters)
    except (TypeError, ValueError):
        takes_arguments = True
    return model(*args, **kwargs) if takes_arguments else model()


def check_failure_streak(study: optuna.Study, outcomes: list[TrialOutcome], model: CompiledModel) -> None:
    """Raise if this process's first trials all failed alike and the study has never completed a trial, or at
    once if its first trial failed with an error no configuration causes (a NameError, ImportError...)."""
    first = outcomes[0] if len(outcomes) == 1 else None
    if first is not None and first.state == TrialState.FAIL and is_configuration_independent(first.exception, model):
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise TrialFailedError(
                f"the first trial of {model.name}() failed with an error that every configuration would meet, so the "
                f"search stopped (the trial is recorded):\n{first.error}"
            ) from first.exception
    if len(outcomes) != FAILURE_STREAK:
        return
    keys = {o.error_key for o in outcomes}
    if len(keys) != 1 or None in keys or any(o.state != TrialState.FAIL for o in outcomes):
        return
    if any(not is_reused(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))):
        return
    last = outcomes[-1]
    message = (
        f"the first {FAILURE_STREAK} trials of {model.name}() all failed with the same error, so the search stopped "
        f"(a bug, not a bad configuration; the trials are recorded, nothing is lost):\n{last.error}"
    )
    raise TrialFailedError(message) from last.exception


class _heartbeat:
    """Record the trial's heartbeat while it runs, where the storage keeps them (databases); through a chief's gRPC
    proxy, which forwards no heartbeat, as a counter in the trial (``hb.beat``) that the chief watches."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial) -> None:
        self.storage = study._storage
        self.trial_id = trial._trial_id
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> None:
        storage = self.storage
        if not isinstance(storage, optuna.storages._heartbeat.BaseHeartbeat):
            storage = getattr(storage, "_backend", storage)
        if isinstance(storage, optuna.storages._heartbeat.BaseHeartbeat) and storage.get_heartbeat_interval():
            interval = storage.get_heartbeat_interval()
            storage.record_heartbeat(self.trial_id)

            def beat() -> None:
                while not self.stop.wait(interval):
                    storage.record_heartbeat(self.trial_id)

            self.thread = threading.Thread(target=beat, daemon=True, name="hyperbrace-heartbeat")
            self.thread.start()
        elif type(storage).__name__ == "GrpcStorageProxy":
            storage.set_trial_system_attr(self.trial_id, PROXY_BEAT_ATTR, 0)

            def count() -> None:
                beats = 0
                while not self.stop.wait(PROXY_BEAT_S):
                    beats += 1
                    try:
                        storage.set_trial_system_attr(self.trial_id, PROXY_BEAT_ATTR, beats)
                    except Exception:  # noqa: BLE001  (finished meanwhile, or the chief is briefly unreachable)
                        pass

            self.thread = threading.Thread(target=count, daemon=True, name="hyperbrace-heartbeat")
            self.thread.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
