"""Reproducible parallel search: the same ``seed`` gives the same configurations for any number of workers.

With several workers, an asynchronous sampler sees whatever trials happen to have finished when it is asked, so
the same seed gives another search each time (Optuna #3056). ``minimize(..., reproducible=True)`` makes what a
trial is sampled from a function of its number alone:

* trials are taken in batches of ``batch`` consecutive numbers (trial numbers are handed out in order by the
  storage, whoever asks);
* trial ``n`` of batch ``k`` is sampled only once every trial of the earlier batches has finished, and only from
  them, "told" in trial-number order: a fresh sampler, seeded from ``(seed, n)``, samples it in an in-memory copy
  of exactly those trials (the *shadow* study), whatever has finished in batch ``k`` meanwhile;
* the pruner, likewise, compares a trial only with trials of earlier batches.

So 1, 3 or 16 workers, fast or slow, draw the same configurations, provided the model itself is deterministic
(the same configuration gives the same loss). The price is waiting: a worker that takes a trial of batch ``k+1``
waits for the slowest trial of batch ``k``, and within a batch the sampler learns nothing from its siblings
(measured in ``benchmarks/results/reproducible.md``). A batch larger than the number of workers keeps every
worker busy; ``reproducible=True`` uses batches of :data:`DEFAULT_BATCH`, ``reproducible=16`` batches of 16.

A trial whose worker died is failed and queued again with its configuration, like any retry; its copy gets a later
number, so a run with failures samples later batches from a different history than a run without.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

__all__ = ["ReproducibleSampler", "ReproduciblePruner", "batch_size", "DEFAULT_BATCH"]

#: ``reproducible=True``: this many trials are sampled from the same history.
DEFAULT_BATCH = 8
POLL_S = 0.05
_UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)
# Each trial's shadow study is a new in-memory study: not worth an INFO line each.
logging.getLogger("optuna.storages._in_memory").setLevel(logging.WARNING)


def batch_size(reproducible: bool | int) -> int:
    """The batch size ``reproducible=`` asks for: 0 (off), :data:`DEFAULT_BATCH` for True, else the number given.

    >>> batch_size(False), batch_size(True), batch_size(4)
    (0, 8, 4)
    """
    if reproducible is True:
        return DEFAULT_BATCH
    if reproducible is False or reproducible is None:
        return 0
    if isinstance(reproducible, int) and reproducible >= 1:
        return reproducible
    raise ValueError(
        f"reproducible={reproducible!r}: write reproducible=True (batches of {DEFAULT_BATCH} trials) or a batch "
        "size such as reproducible=16 (at least the number of workers keeps them all busy)"
    )


def _batch_start(number: int, batch: int) -> int:
    return number - number % batch


def _earlier_batches(study: optuna.Study, number: int, batch: int) -> list[FrozenTrial]:
    """The trials of the batches before ``number``'s, once all of them have finished (waits for that)."""
    start = _batch_start(number, batch)
    while True:
        trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
        earlier = [t for t in trials if t.number < start]
        if not any(t.state in _UNFINISHED for t in earlier):
            return sorted(earlier, key=lambda t: t.number)
        time.sleep(POLL_S)


class ReproducibleSampler(optuna.samplers.BaseSampler):
    """Samples trial ``n`` with a sampler seeded from ``(seed, n)`` on the trials of the earlier batches only.

    ``make_inner(seed)`` builds the sampler the search would otherwise use (a TPE, a random sampler, ...).
    """

    def __init__(self, make_inner: Any, seed: int | None, batch: int) -> None:
        self.make_inner = make_inner
        self.seed = 0 if seed is None else seed
        self.batch = batch
        self._shadows: dict[int, optuna.Trial] = {}
        self._lock = threading.Lock()

    def _seed_for(self, number: int) -> int:
        return (self.seed * 1_000_003 + number) % 2**32

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        history = _earlier_batches(study, trial.number, self.batch)
        shadow = optuna.create_study(
            directions=study.directions, sampler=self.make_inner(self._seed_for(trial.number))
        )
        # Trials are re-numbered 0..len-1 in the shadow, in the real numbers' order: the same for every run.
        shadow.add_trials([t for t in history if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)])
        with self._lock:
            self._shadows[trial.number] = shadow.ask()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}  # every parameter is sampled (relatively, if the inner sampler does so) in the shadow

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        with self._lock:
            shadow = self._shadows.get(trial.number)
        if shadow is None:  # a trial this process did not start (e.g. taken over): sample it the same way now
            self.before_trial(study, trial)
            shadow = self._shadows[trial.number]
        return shadow._suggest(param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        with self._lock:
            self._shadows.pop(trial.number, None)


class _EarlierBatchesView:
    """The study as a pruner sees it: only the trials of earlier batches, and the trial being pruned."""

    def __init__(self, study: optuna.Study, number: int, batch: int) -> None:
        self._study = study
        self._start = _batch_start(number, batch)
        self._number = number

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _keep(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        return [t for t in trials if t.number < self._start or t.number == self._number]

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return self._keep(self._study.get_trials(deepcopy=deepcopy, states=states))

    def _get_trials(self, deepcopy: bool = True, states: Any = None, use_cache: bool = False) -> list[FrozenTrial]:
        return self._keep(self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache))

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class ReproduciblePruner(optuna.pruners.BasePruner):
    """Asks ``inner`` with a view of the study that holds only the earlier batches (finished before this trial was
    sampled), so whether a trial is pruned does not depend on which of its siblings finished first."""

    def __init__(self, inner: optuna.pruners.BasePruner, batch: int) -> None:
        self.inner = inner
        self.batch = batch

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self.inner.prune(_EarlierBatchesView(study, trial.number, self.batch), trial)  # type: ignore[arg-type]
