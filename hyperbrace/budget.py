"""The trial budget: ``max_evals`` counts every trial of the study, across runs, processes and machines.

A process takes a trial only while holding the study's budget lock: it counts the trials that use up the budget
and asks the engine for a new one only if some remain. So ``max_evals`` is honoured exactly, however many workers
there are, and a re-run of a killed search continues the count.

What counts: every trial, finished, running or queued, except a failed trial that is being run again (a trial
whose worker died or was interrupted is failed and queued again; the copy counts in its place). A configuration
that ran several times counts once: only the last of its series (Optuna's ``retry_history``) counts.
And the trials a new version of a study reused from earlier versions (:mod:`hyperbrace.versions`) never
count: they were run there.

>>> import optuna
>>> study = optuna.create_study()
>>> counted_trials(study)
0
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.trial import TrialState

__all__ = ["counted_trials", "count_used", "used_trials", "budget_lock", "REUSED_ATTR", "is_reused", "may_be_best"]

#: The user attribute of a trial that a new version of a study copied from an earlier version (as prior knowledge
#: for its sampler): ``{"study": ..., "version": ..., "trial": ..., "complete": ...}``. It is never run or counted.
REUSED_ATTR = "hb.reused_from"


def is_reused(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether ``trial`` was copied from an earlier version of its study rather than run in it."""
    return REUSED_ATTR in trial.user_attrs


def may_be_best(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether ``trial`` may be the search's best: complete, with a value, and, if reused, a whole configuration
    of the current space (a reused trial that lacks a parameter added since is prior knowledge only).

    >>> from optuna.trial import create_trial
    >>> may_be_best(create_trial(value=1.0)), may_be_best(create_trial(value=1.0, user_attrs={REUSED_ATTR: {"complete": False}}))
    (True, False)
    """
    if trial.state != TrialState.COMPLETE or trial.value is None:
        return False
    reused = trial.user_attrs.get(REUSED_ATTR)
    return reused is None or bool(isinstance(reused, dict) and reused.get("complete"))

_thread_lock = threading.Lock()


def _retried_numbers(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    retried: set[int] = set()
    for trial in trials:
        number = trial.system_attrs.get("failed_trial")
        if number is not None:
            retried.add(number)
        retried.update(trial.system_attrs.get("retry_history", ()))  # every earlier run of the configuration
    return retried


def counted_trials(study: optuna.Study) -> int:
    """How many of ``max_evals`` the study has used (see the module's docstring)."""
    return count_used(study.get_trials(deepcopy=False))


def count_used(trials: list[optuna.trial.FrozenTrial]) -> int:
    """:func:`counted_trials` for trials already fetched (one read of a database study serves several counts)."""
    return len(used_trials(trials))


def used_trials(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards ``max_evals`` (see the module's docstring): not reused from an earlier
    version, and not a failed run whose configuration is being run again.

    >>> from optuna.trial import create_trial
    >>> done, copied = create_trial(value=1.0), create_trial(value=0.5, user_attrs={REUSED_ATTR: {"complete": True}})
    >>> used_trials([done, copied]) == [done]
    True
    """
    retried = _retried_numbers(trials)
    return [t for t in trials if not (t.state == TrialState.FAIL and t.number in retried) and not is_reused(t)]


@contextmanager
def budget_lock(lock_path: Path | None, url: str | None = None) -> Iterator[None]:
    """Hold the study's budget lock: a file lock for a journal or SQLite file, a PostgreSQL advisory lock for a
    database, and always a thread lock (for threads of one process)."""
    with _thread_lock:
        if url is not None and url.startswith("postgresql"):
            from hyperbrace._pglock import advisory_lock

            # One lock per study (its run directory is named after it), not one for the whole database.
            key = f"{lock_path.parent.name}/{lock_path.name}" if lock_path else "hyperbrace"
            with advisory_lock(url, key):
                yield
            return
        if lock_path is None:
            yield
            return
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
