"""Exact budgets without a shared lock: the chief queues one waiting trial per remaining trial, workers claim them.

Local workers and database workers keep ``max_evals`` exact with the budget lock (:mod:`hyperbrace.budget`): a file
lock or a PostgreSQL advisory lock. Workers started by a cluster engine reach the study only through the chief's
gRPC storage proxy: no file, no database session, so no lock. For them the chief *issues tickets*: it queues
``max_evals - used`` waiting trials (Optuna's ``enqueue_trial`` with no fixed parameter), and a worker takes a trial
only by claiming a waiting one, which the storage does atomically (``WAITING -> RUNNING`` succeeds for exactly one
claimant, as in Optuna's own ``Study.ask``). A worker that finds nothing to claim is done. Only the chief creates
trials, so the study never holds more than ``max_evals``; a chief that raises the budget issues more tickets, and
workers still running take them.

A ticket counts as used (it is a waiting trial, like a retry), so a run stopped with tickets left resumes them.

>>> import optuna
>>> optuna.logging.set_verbosity(optuna.logging.WARNING)
>>> study = optuna.create_study()
>>> issue_tickets(study, max_evals=2)
2
>>> trial = claim_ticket(study)
>>> trial.number, pending_tickets(study)
(0, 1)
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from hyperbrace.budget import count_used

__all__ = ["issue_tickets", "claim_ticket", "pending_tickets"]


def issue_tickets(study: optuna.Study, max_evals: int) -> int:
    """Queue waiting trials until the study's used budget reaches ``max_evals``. Returns how many were queued."""
    missing = max_evals - count_used(study.get_trials(deepcopy=False))
    for _ in range(max(0, missing)):
        study.enqueue_trial({}, skip_if_exists=False)
    return max(0, missing)


def pending_tickets(study: optuna.Study) -> int:
    """Waiting trials (tickets and queued retries) not yet claimed."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def claim_ticket(study: optuna.Study, first: int = 0) -> optuna.Trial | None:
    """Claim a waiting trial (``None`` when none is left) and return it as a running trial.

    The ``first``-th lowest is tried first, then the next ones, wrapping around: workers that pass their index
    claim different trials when they ask at the same moment, instead of all racing for the lowest (through a
    chief's proxy, each lost race is one more round trip; 16 workers whose 1 s trials end together lose up to
    120). ``first=0`` takes the lowest-numbered one, which ``reproducible=True`` needs (a worker that skipped an
    unclaimed trial of an earlier batch would wait for it).

    >>> study = optuna.create_study()
    >>> issue_tickets(study, max_evals=3)
    3
    >>> claim_ticket(study, first=4).number  # the second of the three (4 % 3 == 1)
    1
    >>> claim_ticket(study, first=1).number  # the second of those left: 0 and 2
    2
    """
    study._thread_local.cached_all_trials = None  # samplers read the study afresh for each trial (as in ask())
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if waiting:
        start = first % len(waiting)
        waiting = waiting[start:] + waiting[:start]
    for frozen in waiting:
        try:
            if not study._storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                continue  # another worker claimed it first
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        from hyperbrace.recovery import OWNER_ATTR, release
        from hyperbrace.trial import worker_id

        # Owned at once (without a shared lock the owner cannot be written first: two claimants would both write
        # it); a kill between these two writes leaves an ownerless trial, which reap_dead_trials closes later.
        study._storage.set_trial_user_attr(frozen._trial_id, OWNER_ATTR, worker_id())
        try:
            return optuna.Trial(study, frozen._trial_id)
        except BaseException:
            release(study, frozen._trial_id, "interrupted while the sampler was starting it")
            raise
    return None
