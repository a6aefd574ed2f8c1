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

from dataclasses import dataclass

import optuna

__all__ = ["Metric", "metric_of", "set_metric", "METRIC_ATTR"]

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
