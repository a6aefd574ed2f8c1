"""The running trial, as the model code sees it: sampled values, ``report()`` and ``should_prune()``.

One :class:`TrialContext` exists while a trial runs; templates and the public helpers find it through a
context variable, so they work in threads and nested calls without being passed anything.
"""

from __future__ import annotations

import contextvars
import math
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import optuna

if TYPE_CHECKING:
    from hyperbrace.space import Distribution

__all__ = ["TrialContext", "current_trial", "report", "should_prune", "Pruned", "PruningWarning", "monitored_metric"]


class Pruned(optuna.TrialPruned):
    """Raise inside the model function to stop a trial the pruner judged hopeless.

    It is Optuna's ``TrialPruned``, so code written for Optuna keeps working::

        if hyperbrace.should_prune():
            raise hyperbrace.Pruned()
    """


class PruningWarning(UserWarning):
    """Pruning cannot work as asked (e.g. the monitored metric is missing); the search goes on without it."""


# Words in a metric's name that tell its direction. A name matching neither list needs an explicit direction:
# guessing wrong would prune the best trials, silently.
_LOWER_IS_BETTER = frozenset(
    "loss error mae mse rmse msle mape crossentropy hinge divergence kld kl logcosh poisson huber perplexity".split()
)
_HIGHER_IS_BETTER = frozenset(
    "accuracy acc auc precision recall f1 fbeta iou r2 dice sensitivity specificity similarity map ndcg".split()
)


def monitored_metric(prune_on: str | tuple[str, str]) -> tuple[str, str]:
    """The metric the pruner watches and its direction, ``"min"`` or ``"max"``, from ``minimize(prune_on=...)``.

    The direction follows from the name; give it explicitly for a name that does not tell.

    >>> monitored_metric("val_loss")
    ('val_loss', 'min')
    >>> monitored_metric("val_sparse_categorical_accuracy")
    ('val_sparse_categorical_accuracy', 'max')
    >>> monitored_metric(("val_my_score", "max"))
    ('val_my_score', 'max')
    """
    if isinstance(prune_on, (tuple, list)) and len(prune_on) == 2:
        name, direction = prune_on
        if direction not in ("min", "max") or not isinstance(name, str):
            raise ValueError(f"prune_on={prune_on!r}: give (metric name, 'min' or 'max'), e.g. ('val_f1', 'max')")
        return name, direction
    if not isinstance(prune_on, str) or not prune_on:
        raise ValueError(f"prune_on={prune_on!r}: give a metric name such as 'val_loss', or (name, 'min' | 'max')")
    words = set(re.split(r"[^a-z0-9]+", prune_on.lower()))
    if words & _LOWER_IS_BETTER:
        return prune_on, "min"
    if words & _HIGHER_IS_BETTER:
        return prune_on, "max"
    raise ValueError(
        f"prune_on={prune_on!r}: the name does not say whether lower or higher is better; "
        f"write prune_on=({prune_on!r}, 'min') or prune_on=({prune_on!r}, 'max')"
    )


class TrialContext:
    """What one running trial knows: the engine trial, the values sampled so far, the reported steps."""

    def __init__(self, trial: optuna.trial.BaseTrial, *, number: int | None = None) -> None:
        self.trial = trial
        self.number = trial.number if number is None else number
        self.values: dict[str, Any] = {}  # name -> the value's JSON-friendly record
        self.sampled: dict[str, tuple[Distribution, Any, Any]] = {}  # name -> (distribution, raw, site)
        self.last_step: int | None = None
        self.last_value: float | None = None
        self.steps_reported = 0
        self.pruning_enabled = True
        self.extras: dict[str, Any] = {}  # integration state (e.g. the Keras epoch counter)
        # The trial's output goes to its log file; messages the user must see while it runs go here instead.
        self.console = sys.stderr

    # -- sampling ------------------------------------------------------------------------------------------------
    def suggest_raw(self, name: str, distribution: Distribution) -> Any:
        """Ask the engine for the raw (stored) value of ``name`` under ``distribution``."""
        return _suggest(self.trial, name, distribution.engine_distribution())

    # -- intermediate values -------------------------------------------------------------------------------------
    def report(self, value: float, step: int | None = None) -> None:
        value = float(value)
        if step is None:
            step = 0 if self.last_step is None else self.last_step + 1
        step = int(step)
        if self.last_step is not None and step <= self.last_step:
            # Optuna keeps the first value of a step; a repeated step would be silently dropped.
            step = self.last_step + 1
        self.last_step, self.steps_reported = step, self.steps_reported + 1
        if math.isfinite(value):
            self.last_value = value
        # NaN and inf are reported too: a diverged trial is the first one a pruner should stop (Optuna's pruners
        # prune on NaN), and the trial's recorded value stays its last finite one.
        self.trial.report(value, step)

    def should_prune(self) -> bool:
        if not self.pruning_enabled or self.last_step is None:
            return False
        return self.trial.should_prune()

    # -- messages ------------------------------------------------------------------------------------------------
    def warn_once(
        self, key: str, message: str, category: type[Warning] = PruningWarning, where: tuple[str, int] | None = None
    ) -> None:
        """Warn once per search (and process) about ``key``: on the console, and in the trial's log.

        ``where`` is the (file, line) the warning is about, e.g. the user's ``fit`` call; by default the caller's.
        """
        study_name = getattr(getattr(self.trial, "study", None), "study_name", None)
        if (study_name, key) in _warned_once:
            return
        _warned_once.add((study_name, key))
        if study_name is not None:
            message = f"search {study_name!r}: {message}"  # also keeps Python from hiding it as a repeat
        if self.console is not sys.stderr:
            # While the trial runs, sys.stderr is its log file: note it there, and warn on the console.
            print(f"[hyperbrace] trial {self.number}: {category.__name__}: {message}", file=sys.stderr)
        saved, sys.stderr = sys.stderr, self.console
        try:
            if where is None:
                warnings.warn(message, category, stacklevel=3)
            else:
                warnings.warn_explicit(message, category, where[0], where[1])
        finally:
            sys.stderr = saved


_warned_once: set[tuple[str | None, str]] = set()


def _suggest(trial: optuna.trial.BaseTrial, name: str, dist: Any) -> Any:
    """Suggest through Optuna's public API, which every trial kind (``Trial``, ``FixedTrial``) has."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    raise TypeError(f"unsupported distribution {dist!r}")


_current: contextvars.ContextVar[TrialContext | None] = contextvars.ContextVar("hyperbrace_trial", default=None)


def current_trial() -> TrialContext | None:
    """The trial running in this thread, or ``None`` outside a search.

    >>> current_trial() is None
    True
    """
    return _current.get()


@contextmanager
def active(context: TrialContext) -> Iterator[TrialContext]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


_warned_outside = False


def report(value: float, step: int | None = None) -> None:
    """Report an intermediate result (e.g. this epoch's validation loss) so the pruner can judge the trial.

    Lower is better, as for the final loss (in a :func:`~hyperbrace.maximize` search: the maximized metric, higher
    is better). ``step`` defaults to the next step after the last one reported.
    Outside a search it does nothing (with one warning), so the model function still runs on its own.

    >>> report(0.5, step=1)  # outside a search: a no-op
    """
    context = _current.get()
    if context is None:
        _warn_outside("report")
        return
    sign = context.extras.get("sign", 1)  # maximize(): the metric as computed, stored negated like the final value
    context.report(value if sign == 1 else sign * float(value), step)


def should_prune() -> bool:
    """Whether the pruner wants the running trial stopped now; raise :class:`Pruned` when it does.

    >>> should_prune()  # outside a search nothing is ever pruned
    False
    """
    context = _current.get()
    return False if context is None else context.should_prune()


def _warn_outside(what: str) -> None:
    global _warned_outside
    if not _warned_outside:
        _warned_outside = True
        warnings.warn(f"hyperbrace.{what}() was called outside a search; it does nothing there", stacklevel=3)
