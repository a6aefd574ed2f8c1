"""Which logged metric the pruner judges a trial by: the one ``prune_on`` names, or (``prune_on="auto"``, the
default) the validation metric that the model's returned loss turns out to be.

Why learn it: pruning helps only when it judges trials by the measure the search ranks them by. A model that
returns ``-accuracy`` (the Hyperas article's ``{'loss': -acc}``) but is pruned on ``val_loss`` stops trials whose
accuracy would have been the best and keeps trials with a low loss; in the race (docs/search.md) pruning on the
score's own metric ended higher than pruning on ``val_loss``, and the pruning replay reached full training's best
more often and sooner with it.

How, with ``"auto"``:

* Until a trial of the study has completed, trials report nothing to the pruner (so nothing is pruned, as with
  any pruner's warm-up) and keep every epoch's logged metrics.
* When a trial completes, its returned loss is compared with every validation metric it logged: the one that
  equals it at some epoch (the loss, or minus a higher-is-better metric such as an accuracy) is the metric. It is
  recorded on the study (the user attribute ``hyperbrace.prune_on``), so every worker, on any machine, judges by
  the same metric, and a resumed search keeps it.
* The trial then reports its kept epochs, and so does every trial that was running beside it, as soon as it
  learns the metric; from then on trials report each epoch as it ends.
* A loss that equals no logged metric (the model scored itself on other data, e.g. a test set) is followed by the
  validation metric that points the same way: a negative loss by the closest higher-is-better one, a positive loss
  by the closest lower-is-better one. A :class:`~hyperbrace.PruningWarning` says which was taken, and how to name
  it.

Only validation metrics (names starting with ``val``, ``valid`` or ``validation``) are candidates: a trial judged
by how it fits its training data would keep the configurations that overfit.

>>> watch = MetricWatch(None, "auto")
>>> for epoch, (loss, accuracy) in enumerate([(0.9, 0.70), (0.6, 0.81), (0.7, 0.80)], start=1):
...     _ = watch.observe(epoch, {"val_loss": loss, "val_accuracy": accuracy}, last=epoch == 3)
>>> identify(-0.81, watch.kept)  # the model returned minus its best validation accuracy
(('val_accuracy', 'max'), True)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hyperbrace._context import monitored_metric

if TYPE_CHECKING:
    from hyperbrace._context import TrialContext

__all__ = [
    "AUTO", "PRUNE_ON_ATTR", "MetricWatch", "WatchingCallback", "watch", "settle", "identify", "check_prune_on",
    "learnt",
]

AUTO = "auto"
PRUNE_ON_ATTR = "hyperbrace.prune_on"  #: study user attribute: the metric "auto" learnt, and from which trial
_WATCHES = "hb.metric_watches"  # TrialContext.extras: one MetricWatch per prune_on the trial's fits used
# Within this (relative to the loss, at least 1e-4 absolute) a logged value is the returned one: fit's validation
# pass and a later model.evaluate on the same data differ only by float summation order (batch sizes).
_SAME = 1e-4


def check_prune_on(prune_on: Any) -> None:
    """Raise ``ValueError`` now, at the search's start, for a ``prune_on`` that no trial could use.

    >>> check_prune_on("auto"); check_prune_on("val_accuracy")
    >>> check_prune_on("val_thing")
    Traceback (most recent call last):
    ...
    ValueError: prune_on='val_thing': the name does not say whether lower or higher is better; write prune_on=('val_thing', 'min') or prune_on=('val_thing', 'max')
    """
    if prune_on != AUTO:
        monitored_metric(prune_on)


def is_validation(name: str) -> bool:
    """Whether a logged metric's name says it was measured on validation data.

    >>> [is_validation(n) for n in ("val_loss", "valid/acc", "validation_f1", "loss", "interval_ms")]
    [True, True, True, False, False]
    """
    return re.split(r"[^a-z0-9]+", name.lower(), maxsplit=1)[0] in ("val", "valid", "validation")


def _direction(name: str) -> str | None:
    try:
        return monitored_metric(name)[1]
    except ValueError:
        return None


def identify(loss: float, epochs: list[tuple[int, dict[str, float]]]) -> tuple[tuple[str, str], bool] | None:
    """The validation metric (name, direction) that ``loss`` follows, and whether it equals it exactly.

    ``epochs`` holds (step, logged metrics) pairs. See the module's doc for the rule; ``None`` when no
    validation metric fits.

    >>> identify(0.35, [(1, {"val_loss": 0.35, "val_accuracy": 0.9})])
    (('val_loss', 'min'), True)
    >>> identify(-0.88, [(1, {"val_loss": 0.35, "val_accuracy": 0.9})])  # scored on a test set: closest "max"
    (('val_accuracy', 'max'), False)
    """
    close: list[tuple[float, str, str]] = []
    for _, numbers in epochs:
        for name, value in numbers.items():
            if not is_validation(name):
                continue
            known = _direction(name)
            for direction, signed in (("min", value), ("max", -value)):
                if known in (None, direction):
                    close.append((abs(signed - loss), name, direction))
    exact = [c for c in close if c[0] <= _SAME * max(1.0, abs(loss))]
    if exact:
        _, name, direction = min(exact)
        return (name, direction), True
    # The loss was computed on other data: follow the validation metric that points the same way, nearest in value.
    wanted = "max" if loss < 0 else "min"
    last = epochs[-1][1] if epochs else {}
    near = [(abs((-value if wanted == "max" else value) - loss), name) for name, value in last.items()
            if is_validation(name) and _direction(name) == wanted]
    return ((min(near)[1], wanted), False) if near else None


def learnt(context: TrialContext | None) -> tuple[str, str] | None:
    """The metric recorded on the trial's study by an earlier trial, if any."""
    study = getattr(getattr(context, "trial", None), "study", None)
    if study is None:
        return None
    recorded = study.user_attrs.get(PRUNE_ON_ATTR)
    if isinstance(recorded, dict) and recorded.get("direction") in ("min", "max"):
        return str(recorded["name"]), recorded["direction"]
    return None


class MetricWatch:
    """One trial's reporting of one ``prune_on`` to the pruner, epoch by epoch (shared by all of its fits).

    ``context`` is the running trial (``None``: only remember, report nothing, as in the module's example).
    """

    def __init__(self, context: TrialContext | None, prune_on: Any) -> None:
        self.context = context
        self.auto = prune_on == AUTO
        self.metric: tuple[str, str] | None = None if self.auto else monitored_metric(prune_on)
        self.kept: list[tuple[int, dict[str, float]]] = []  #: (step, logged metrics) while the metric is unknown
        self.last_value: float | None = None  #: the watched metric's last value, as logged

    @property
    def name(self) -> str:
        """The watched metric's name, or ``"auto"`` while it is not known."""
        return self.metric[0] if self.metric else AUTO

    def finds_metric_in(self, logs: Mapping[str, Any]) -> bool:
        """Whether ``logs`` hold what this watch reports: its metric, or (while "auto" has none) a validation one."""
        if self.metric is None:
            return any(is_validation(name) for name in logs)
        return self.metric[0] in logs

    def observe(self, step: int, logs: Mapping[str, Any], *, last: bool) -> bool:
        """One epoch ended with ``logs``: report it (or keep it); returns whether the pruner says stop.

        The pruner is not asked after a fit's ``last`` epoch: the training is done, and pruning would only throw
        the model away.
        """
        numbers = _numbers(logs)
        if self.metric is None:
            self.metric = learnt(self.context)
            if self.metric is None:
                self.kept.append((step, numbers))
                return False
            epochs, self.kept = [*self.kept, (step, numbers)], []
            # Learnt from another trial meanwhile: report the earlier epochs first, asking after each as it would
            # have been asked (successive halving records each rung's value at its own epoch).
            verdicts = [self._report(s, n, ask=not (last and s == step)) for s, n in epochs]
            return any(verdicts)
        return self._report(step, numbers, ask=not last)

    def settle(self, loss: float, where: tuple[str, int] | None = None) -> None:
        """The trial completed with ``loss``: learn the metric from it if no trial has yet, report the kept epochs.

        ``where`` is the model's (file, line) that returned the loss, where a warning about it points.
        """
        if self.metric is not None or not self.kept:
            return
        self.metric = learnt(self.context)
        if self.metric is None:
            self.metric = self._learn(loss, where)
            if self.metric is None:
                return
        epochs, self.kept = self.kept, []
        for step, numbers in epochs:
            # Asked too (and not heeded: the trial is complete), so that successive halving records this trial's
            # value at each rung and later trials compete with it.
            self._report(step, numbers, ask=step != epochs[-1][0])

    def _learn(self, loss: float, where: tuple[str, int] | None) -> tuple[str, str] | None:
        found = identify(loss, self.kept)
        context = self.context
        if context is None:
            return found[0] if found else None
        if found is None:
            if any(is_validation(name) for _, numbers in self.kept for name in numbers):
                logged = ", ".join(sorted(self.kept[-1][1])) or "none"
                context.warn_once(
                    "prune-on-auto:none",
                    f"pruning is off: prune_on='auto' found no validation metric that the returned loss ({loss:.6g})"
                    f" follows (logged: {logged}). Name the metric to judge trials by with minimize(prune_on=...), "
                    "e.g. prune_on=('val_f1', 'max').", where=where,
                )
            return None
        (name, direction), exact = found
        study = getattr(context.trial, "study", None)
        if study is not None:
            study.set_user_attr(PRUNE_ON_ATTR, {"name": name, "direction": direction, "trial": context.number,
                                                "exact": exact})
        if not exact:
            context.warn_once(
                "prune-on-auto:near",
                f"prune_on='auto': no validation metric equals the loss trial {context.number} returned "
                f"({loss:.6g}); trials are judged by {name!r} ({'higher' if direction == 'max' else 'lower'} is "
                f"better), the validation metric that points the same way. If the model scores itself on other "
                f"data, name the metric to be sure: minimize(prune_on={name!r}).", where=where,
            )
        return name, direction

    def _report(self, step: int, numbers: dict[str, float], *, ask: bool) -> bool:
        assert self.metric is not None
        name, direction = self.metric
        value = numbers.get(name)
        if value is None:
            return False
        self.last_value = value
        if self.context is None:
            return False
        self.context.report(-value if direction == "max" else value, step)
        return ask and self.context.should_prune()


class WatchingCallback:
    """What the Keras and Lightning pruning callbacks show of their :class:`MetricWatch` (``self.watch``)."""

    watch: MetricWatch

    @property
    def metric(self) -> str:
        """The watched metric's name (``"auto"`` until it is known)."""
        return self.watch.name

    @property
    def direction(self) -> str | None:
        """``"min"`` or ``"max"`` (``None`` until ``"auto"`` knows its metric)."""
        return self.watch.metric[1] if self.watch.metric else None


def _numbers(logs: Mapping[str, Any]) -> dict[str, float]:
    """The logged values that are numbers (Lightning logs tensors; Keras floats), as floats."""
    numbers = {}
    for name, value in (logs or {}).items():
        try:
            number = float(value.item() if hasattr(value, "item") else value)
        except (TypeError, ValueError, RuntimeError):  # a tensor of several values, a string
            continue
        numbers[name] = number
    return numbers


def watch(context: TrialContext, prune_on: Any) -> MetricWatch:
    """The trial's watch for ``prune_on``, created at its first fit: later fits go on where it stopped."""
    watches = context.extras.setdefault(_WATCHES, {})
    key = repr(prune_on)
    if key not in watches:
        watches[key] = MetricWatch(context, prune_on)
    return watches[key]


def settle(context: TrialContext, loss: float, where: tuple[str, int] | None = None) -> None:
    """The trial completed with ``loss`` (as the study stores it): see :meth:`MetricWatch.settle`."""
    if math.isfinite(loss):
        for metric_watch in context.extras.get(_WATCHES, {}).values():
            metric_watch.settle(loss, where)
