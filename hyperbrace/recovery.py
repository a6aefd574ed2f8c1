"""Who owns a running trial, and what happens to it when its owner is gone: nothing is left RUNNING, nothing is lost.

Every trial a search runs is *owned* from the moment it exists: :func:`claim` creates it (or takes a queued one)
with its owner (``hb.worker``: host, process id and the process's start time) in the same write, so no kill or
Ctrl-C can leave a RUNNING trial that nobody will close. When the owner stops while running it, the trial is
failed and its configuration queued again:

* interrupted (Ctrl-C, SIGTERM, the search's main process killed, a SIGKILL from outside): the configuration
  is run again however many times that happens (up to :data:`MAX_INTERRUPTIONS`, a guard against a crash this
  module cannot see), and it never uses up ``retries``: it was not the configuration's fault;
* crashed (a segmentation fault, an abort, a non-zero exit, the kernel's out-of-memory killer): the
  configuration may be what crashes, so it runs again only ``retries`` times.

The reaper (:func:`reap_dead_trials`) finds trials whose owner died (on this host: by process id and start time;
elsewhere: by the database's heartbeats) and trials that have no owner at all (left by an older version, or by
plain ``study.ask()``; a reaper without the budget lock waits :data:`UNOWNED_GRACE_S` for those, since lock-free
claimers write the owner just after the trial starts). It runs under the study's budget lock, so two reapers never
queue one trial twice, and
the queued copy is written *before* the trial is failed: a kill between the two writes leaves a RUNNING trial
that the next reaper closes, never a failed trial without its retry.

A queued copy keeps Optuna's retry attributes (``failed_trial``: the first trial of the series,
``retry_history``: every earlier one), so a configuration counts once in ``max_evals`` however often it ran.

>>> worker_id().count(":")
2
>>> describe_exit(-9)
'killed by SIGKILL (likely out of memory)'
"""

from __future__ import annotations

import datetime
import signal
import socket
import warnings
from collections.abc import Mapping
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "OWNER_ATTR", "MAX_INTERRUPTIONS", "worker_id", "is_worker_alive", "claim", "release", "requeue",
    "reap_dead_trials", "describe_exit", "crash_signal_in_log", "oom_kills",
]

OWNER_ATTR = "hb.worker"  #: the user attribute naming the process that runs a trial
#: How often one configuration may be interrupted before an interruption counts against ``retries`` like a crash.
MAX_INTERRUPTIONS = 20
#: A RUNNING trial without an owner for this long is closed even by a reaper that does not hold the budget lock
#: (claimers that take no lock, :mod:`hyperbrace.tickets`, write the owner a moment after the trial starts).
UNOWNED_GRACE_S = 120.0
_ATTEMPTS = "hb.attempts"  #: earlier runs of this configuration that crashed (they use up ``retries``)
_INTERRUPTIONS = "hb.interruptions"  #: earlier runs of this configuration that were interrupted
_OOM_AT_START = "hb.oom_kills"  #: the host's out-of-memory kill count when the trial started
#: Signals that mean the process crashed by itself (the configuration may be the cause).
_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE, signal.SIGILL}
#: Signals that mean somebody stopped the process.
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT}


# -- owners ---------------------------------------------------------------------------------------------------------
def worker_id() -> str:
    """``host:pid:start``: identifies this process (:func:`hyperbrace.trial.worker_id`, where it has always been)."""
    from hyperbrace.trial import worker_id as trial_worker_id

    return trial_worker_id()


def is_worker_alive(worker: str) -> bool | None:
    """Whether the process ``worker`` names still runs; ``None`` when it ran on another host.

    >>> is_worker_alive(worker_id()), is_worker_alive("elsewhere:1:1")
    (True, None)
    """
    from hyperbrace.trial import is_worker_alive as trial_is_worker_alive

    return trial_is_worker_alive(worker)


def oom_kills() -> int | None:
    """How many processes the kernel's out-of-memory killer has killed on this host (``None`` where unknown).

    >>> oom_kills() is None or oom_kills() >= 0
    True
    """
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


# -- claiming -------------------------------------------------------------------------------------------------------
def claim(study: optuna.Study, claimed: list[int] | None = None) -> optuna.Trial:
    """``study.ask()``, with the trial owned by this process from the moment it exists.

    A queued trial gets its owner before it is marked RUNNING; a new one is created RUNNING with its owner in one
    write. The sampler starts the trial afterwards; if that is interrupted (a slow sampler and a Ctrl-C), the trial
    is failed and queued again before the interrupt goes on. Call it under the budget lock. ``claimed`` receives
    the trial's id as soon as it exists (so a caller can close it if something later goes wrong).

    >>> study = optuna.create_study()
    >>> trial = claim(study)
    >>> trial.user_attrs[OWNER_ATTR] == worker_id(), study.trials[0].state.name
    (True, 'RUNNING')
    """
    storage = study._storage
    owner = worker_id()
    oom = oom_kills()
    trial_id = None
    for waiting in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            storage.set_trial_user_attr(waiting._trial_id, OWNER_ATTR, owner)
            if oom is not None:
                storage.set_trial_system_attr(waiting._trial_id, _OOM_AT_START, oom)
            if storage.set_trial_state_values(waiting._trial_id, state=TrialState.RUNNING):
                trial_id = waiting._trial_id
                break
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    if trial_id is None:
        template = FrozenTrial(
            number=-1, state=TrialState.RUNNING, value=None, values=None,
            datetime_start=datetime.datetime.now(), datetime_complete=None, params={}, distributions={},
            user_attrs={OWNER_ATTR: owner}, system_attrs={} if oom is None else {_OOM_AT_START: oom},
            intermediate_values={}, trial_id=-1,
        )
        trial_id = storage.create_new_trial(study._study_id, template_trial=template)
    if claimed is not None:
        claimed.append(trial_id)
    thread_local = getattr(study, "_thread_local", None)
    if thread_local is not None:
        thread_local.cached_all_trials = None  # what study.ask() does: samplers see the study as it is now
    try:
        return optuna.Trial(study, trial_id)
    except BaseException:
        release(study, trial_id, "interrupted while the sampler was starting it")
        raise


def release(study: optuna.Study, trial_id: int, reason: str, crashed: bool = False, max_retry: int = 1) -> bool:
    """Fail the RUNNING trial ``trial_id`` with ``reason`` and queue its configuration again (see the module's
    docstring for how often). Returns False when the trial was no longer running (someone closed it already)."""
    trial = study._storage.get_trial(trial_id)
    if trial.state != TrialState.RUNNING:
        return False
    requeue(study, trial, max_retry=max_retry, crashed=crashed)
    try:
        # The reason first: a finished trial takes no more attributes.
        study._storage.set_trial_user_attr(trial_id, "hb.error", reason)
        return study._storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def requeue(
    study: optuna.Study, failed: FrozenTrial, max_retry: int = 1, crashed: bool = True,
    trials: list[FrozenTrial] | None = None,
) -> bool:
    """Queue ``failed``'s configuration again, unless it is queued already or has used up its runs.

    ``crashed`` runs count against ``max_retry``; interrupted ones only against :data:`MAX_INTERRUPTIONS`.
    Returns whether a copy is queued (now or before).

    >>> study = optuna.create_study()
    >>> trial = study.ask(); _ = trial.suggest_float("x", 0, 1); _ = study.tell(trial, state=TrialState.FAIL)
    >>> requeue(study, study.trials[0], max_retry=1), requeue(study, study.trials[0], max_retry=1)
    (True, True)
    >>> [t.state.name for t in study.trials]
    ['FAIL', 'WAITING']
    """
    trials = study._storage.get_all_trials(study._study_id, deepcopy=False) if trials is None else trials
    if any(failed.number in t.system_attrs.get("retry_history", ()) for t in trials):
        return True  # queued before (this is idempotent: a reaper and the trial's own process may both ask)
    attempts = int(failed.system_attrs.get(_ATTEMPTS, 0))
    interruptions = int(failed.system_attrs.get(_INTERRUPTIONS, 0))
    if not crashed and interruptions >= MAX_INTERRUPTIONS:
        crashed = True  # interrupted this often: more likely a crash that looked like an interruption
    if crashed:
        attempts += 1
        if attempts > max_retry:
            return False
    else:
        interruptions += 1
    history = list(failed.system_attrs.get("retry_history", [])) + [failed.number]
    # Optuna's own attributes (an enqueued trial's "fixed_params") go with it; hyperbrace's per-run ones do not.
    system_attrs = {k: v for k, v in failed.system_attrs.items() if not k.startswith("hb.")}
    system_attrs.update({
        "failed_trial": failed.system_attrs.get("failed_trial", failed.number), "retry_history": history,
        _ATTEMPTS: attempts, _INTERRUPTIONS: interruptions,
    })
    # The copy starts clean: inheriting the failed run's "hb.worker" would let a reaper take the retry for the
    # dead process's trial, and "hb.error" would mark a good retry as failed.
    user_attrs = {k: v for k, v in failed.user_attrs.items() if not k.startswith("hb.")}
    copy = optuna.trial.create_trial(
        state=TrialState.WAITING, params=failed.params, distributions=failed.distributions,
        user_attrs=user_attrs, system_attrs=system_attrs,
    )
    study._storage.create_new_trial(study._study_id, template_trial=copy)
    return True


# -- reaping --------------------------------------------------------------------------------------------------------
def describe_exit(status: int, oom_rose: bool | None = None) -> str:
    """What a process's exit status says about how it ended (``subprocess``'s convention: -N is signal N).

    >>> describe_exit(-11)
    'crashed with SIGSEGV (a fault in native code)'
    >>> describe_exit(-9, oom_rose=False)
    'killed by SIGKILL from outside (the out-of-memory killer did not run)'
    >>> describe_exit(1)
    'exited with status 1'
    """
    if status >= 0:
        return f"exited with status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        return f"killed by signal {-status}"
    if -status == signal.SIGKILL:
        if oom_rose is False:
            return "killed by SIGKILL from outside (the out-of-memory killer did not run)"
        return "killed by SIGKILL (likely out of memory)"
    if -status in _CRASH_SIGNALS:
        what = {"SIGSEGV": "a fault in native code", "SIGBUS": "a bad memory access", "SIGABRT": "an abort",
                "SIGFPE": "an arithmetic fault", "SIGILL": "an illegal instruction"}[name]
        return f"crashed with {name} ({what})"
    return f"stopped by {name}"


#: faulthandler's names for the crash signals ("Fatal Python error: Segmentation fault").
_FAULTHANDLER_NAMES = {"Segmentation fault": signal.SIGSEGV, "Bus error": signal.SIGBUS, "Aborted": signal.SIGABRT,
                       "Floating point exception": signal.SIGFPE, "Illegal instruction": signal.SIGILL}


def crash_signal_in_log(log_text: str) -> int | None:
    r"""The exit status (-signal) of a crash that faulthandler wrote into a trial's log, or None: a trial reaped by
    another process than its worker's parent (which alone sees the exit status) still names its signal.

    >>> describe_exit(crash_signal_in_log("about to crash\nFatal Python error: Segmentation fault\n\nThread 0x..."))
    'crashed with SIGSEGV (a fault in native code)'
    >>> crash_signal_in_log("an ordinary log") is None
    True
    """
    for line in log_text.splitlines():
        if line.startswith("Fatal Python error: "):
            number = _FAULTHANDLER_NAMES.get(line.removeprefix("Fatal Python error: ").strip())
            if number is not None:
                return -int(number)
    return None


def _crashed(status: int | None, oom_rose: bool | None, log_text: str) -> bool:
    """Whether a death counts against ``retries`` (the configuration may have caused it)."""
    if "Fatal Python error" in log_text:
        return True  # faulthandler wrote a crash into the trial's log
    if oom_rose:
        return True
    if status is None:
        return False  # found dead later (the search was killed): an interruption
    if status < 0:
        if -status == signal.SIGKILL:
            return oom_rose is None  # unknown whether memory ran out: count it, so a crash loop ends
        return -status not in _STOP_SIGNALS
    return status not in (0, 130)


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def reap_dead_trials(
    study: optuna.Study,
    max_retry: int = 1,
    logs_dir: Path | None = None,
    deaths: Mapping[int, tuple[int, str]] | None = None,
    unowned: bool = False,
) -> list[int]:
    """Fail (and queue again, see the module's docstring) running trials whose process is gone. Call it under
    the study's budget lock. Returns the numbers of the trials it closed.

    ``deaths`` maps the process ids of workers this process saw die to their exit status and last output: the
    trial's error then names the signal, and its log gets the worker's last output. ``unowned=True`` (only where
    no trial can be between creation and claim, i.e. with the budget lock held by every claimer) also closes
    RUNNING trials that have no owner; without it, those running for :data:`UNOWNED_GRACE_S` are closed.

    >>> study = optuna.create_study()
    >>> def ownerless(started):
    ...     return study._storage.create_new_trial(study._study_id, FrozenTrial(
    ...         number=-1, state=TrialState.RUNNING, value=None, datetime_start=started, datetime_complete=None,
    ...         params={}, distributions={}, user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=-1))
    >>> _ = ownerless(datetime.datetime.now()), ownerless(datetime.datetime.now() - datetime.timedelta(hours=1))
    >>> reap_dead_trials(study), reap_dead_trials(study, unowned=True)  # the old one; the new one under the lock
    ([1], [0])
    >>> [t.state.name for t in study.trials]
    ['FAIL', 'FAIL', 'WAITING', 'WAITING']
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # databases: by heartbeat, for any host
    deaths = deaths or {}
    trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
    closed = []
    host = socket.gethostname()
    for trial in trials:
        if trial.state != TrialState.RUNNING:
            continue
        owner = trial.user_attrs.get(OWNER_ATTR)
        if owner is None:
            reason, crashed = "it was left running without an owner (its search stopped as it began)", False
            if not unowned:
                started = trial.datetime_start
                if started is None or (datetime.datetime.now() - started).total_seconds() < UNOWNED_GRACE_S:
                    continue
                # No lock held: the state change decides which reaper queues the copy (only one succeeds).
                try:
                    study._storage.set_trial_user_attr(trial._trial_id, "hb.error", reason)
                    if not study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                        continue
                except optuna.exceptions.UpdateFinishedTrialError:
                    continue
                requeue(study, trial, max_retry=max_retry, crashed=False, trials=trials)
                closed.append(trial.number)
                continue
        else:
            if is_worker_alive(owner) is not False:
                continue
            reason, crashed = _death(trial, owner, host, logs_dir, deaths)
        requeue(study, trial, max_retry=max_retry, crashed=crashed, trials=trials)
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "hb.error", reason)
            if study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                closed.append(trial.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another process closed it first
    return closed


def _death(
    trial: FrozenTrial, owner: str, host: str, logs_dir: Path | None, deaths: Mapping[int, tuple[int, str]]
) -> tuple[str, bool]:
    """Why ``trial``'s process died (for its error and log) and whether that counts against ``retries``."""
    pid = int(owner.split(":")[1]) if owner.count(":") >= 2 and owner.split(":")[1].isdigit() else -1
    status, output = deaths.get(pid, (None, "")) if owner.startswith(host + ":") else (None, "")
    started = trial.system_attrs.get(_OOM_AT_START)
    now = oom_kills()
    oom_rose = None if started is None or now is None else now > int(started)
    log_path = logs_dir / f"trial-{trial.number:05d}.log" if logs_dir is not None else None
    try:
        log_text = log_path.read_text(errors="replace") if log_path is not None else ""
    except OSError:
        log_text = ""
    if status is None:
        status = crash_signal_in_log(log_text)
    crashed = _crashed(status, oom_rose, log_text)
    if status is not None:
        how = describe_exit(status, oom_rose)
    elif "Fatal Python error" in log_text:
        how = "crashed (faulthandler's stack is in the trial's log)"
    elif oom_rose:
        how = "was killed, likely out of memory (the out-of-memory killer ran during the trial)"
    else:
        how = "stopped while running it (killed, or its machine went down)"
    reason = f"its process died: {how}"
    if "Fatal Python error" in log_text and status is not None:
        reason += "; faulthandler's stack is in the trial's log"
    last = _tail(log_text.split("\n[hyperbrace]")[0].split("Fatal Python error")[0], 10) if log_text else ""
    if last.strip():
        reason += f"\nlast output of the trial:\n{last}"
    if log_path is not None and (status is not None or output):
        try:
            with open(log_path, "a", encoding="utf-8", errors="replace") as log:
                log.write(f"\n[hyperbrace] the process running this trial {how}; the trial is failed.\n")
                if output.strip():
                    log.write(f"[hyperbrace] the worker's last output:\n{_tail(output, 25)}\n")
        except OSError:
            pass
    return reason, crashed
