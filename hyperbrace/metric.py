"""What a search optimizes, as the user sees it: "loss" (minimized) or a metric that :func:`maximize` raises.

The study itself always minimizes (pruners, samplers and the Keras callbacks all work on "lower is better"); a
maximized metric is stored negated, and the study remembers its name and direction (the study attribute
``hyperbrace.metric``) so that tables, reports and exports show it as the model returned it.

>>> import optuna
>>> study = optuna.create_study()
>>> set_metric(study, "accuracy", maximize=True)
>>> metric = metric_of(study)
>>> metric.name, metric.sign, metric.show(-0.93)
('accuracy', -1, 0.93)
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import optuna

__all__ = ["Metric", "metric_of", "set_metric", "as_minimized", "METRIC_ATTR"]

METRIC_ATTR = "hyperbrace.metric"


@dataclass(frozen=True)
class Metric:
    name: str = "loss"
    sign: int = 1  #: 1: the stored value as it is (minimized); -1: the stored value is the negated metric

    @property
    def maximized(self) -> bool:
        return self.sign == -1

    def show(self, stored: float | None) -> float | None:
        """The value as the model returned it, from the value the study stores."""
        return None if stored is None else self.sign * stored

    def shown(self, trial: optuna.trial.FrozenTrial) -> float:
        """A trial's value as the model returned it (a ``target=`` for Optuna's plots)."""
        return self.sign * trial.value  # type: ignore[operator]


def metric_of(study: optuna.Study) -> Metric:
    """The metric a study's search optimizes (``loss``, minimized, unless :func:`maximize` made it)."""
    recorded = study.user_attrs.get(METRIC_ATTR)
    if not isinstance(recorded, dict):
        return Metric()
    return Metric(str(recorded.get("name", "loss")), -1 if recorded.get("direction") == "maximize" else 1)


def set_metric(study: optuna.Study, name: str, maximize: bool) -> None:
    """Record what the search optimizes (once: a resumed search keeps it)."""
    value = {"name": name, "direction": "maximize" if maximize else "minimize"}
    if study.user_attrs.get(METRIC_ATTR) != value:
        study.set_user_attr(METRIC_ATTR, value)


def as_minimized(result: Any, name: str, sign: int) -> Any:
    """What a model returned, as the loss the study minimizes: a maximized metric is negated.

    A maximizing model returns the metric (a number) or a dict with it under its name; other keys are kept.

    >>> as_minimized({"accuracy": 0.9, "model": "m"}, "accuracy", -1)
    {'model': 'm', 'loss': -0.9}
    >>> as_minimized(0.25, "loss", 1)
    0.25
    """
    if sign == 1:
        return result
    if isinstance(result, dict):
        if name not in result:
            if result.get("status") == "fail":
                return result
            raise TypeError(f"maximize(metric={name!r}): the model returned a dict without {name!r} (keys: "
                            f"{sorted(result)}); return the {name} (a number) or {{{name!r}: value, ...}}")
        rest = {k: v for k, v in result.items() if k != name}
        return {**rest, "loss": _negated(result[name])}
    return _negated(result)


def _negated(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return -float(value)
    return value  # not a number: read_result says what to return instead
