"""The best configuration as text to paste elsewhere: JSON, YAML or Python (``hyperbrace best RUN --format ...``).

>>> import optuna
>>> study = optuna.create_study(study_name="mnist.create_model")
>>> study.add_trial(optuna.trial.create_trial(value=0.125, params={"units": 512, "act": "relu"},
...     distributions={"units": optuna.distributions.IntDistribution(16, 1024),
...                    "act": optuna.distributions.CategoricalDistribution(["relu", "tanh"])}))
>>> print(best_as(study, "yaml"))
study: "mnist.create_model"
trial: 0
loss: 0.125
params:
  units: 512
  act: "relu"
engine_params:
  units: 512
  act: "relu"
"""

from __future__ import annotations

import json
from typing import Any

import optuna

from hyperbrace.budget import is_reused
from hyperbrace.display import trial_label
from hyperbrace.metric import metric_of

__all__ = ["best_as", "FORMATS"]

FORMATS = ("json", "yaml", "python")


def best_record(study: optuna.Study) -> dict[str, Any]:
    """The best trial as a plain dict: study, trial, the metric as returned, real values and the engine's values."""
    from hyperbrace.htmlreport.data import best_trial

    trial = best_trial(study)
    if trial is None:
        raise ValueError(f"study {study.study_name!r} has no completed trial yet: there is no best configuration")
    metric = metric_of(study)
    record = {
        "study": study.study_name,
        "trial": trial.number,
        metric.name: metric.show(trial.value),
        "params": dict(trial.user_attrs.get("hb.values", trial.params)),
        "engine_params": dict(trial.params),
    }
    if is_reused(trial):  # the best of a new version may be a trial it reused from an earlier one
        record["reused_from"] = trial_label(trial)
    return record


def _yaml_scalar(value: Any) -> str:
    # JSON's scalars (numbers, strings in double quotes, true/false/null) are YAML scalars as well.
    return json.dumps(value, default=repr)


def best_as(study: optuna.Study, format: str = "json") -> str:
    """The best configuration in ``format``: "json", "yaml" or "python" (ValueError for anything else)."""
    if format not in FORMATS:
        raise ValueError(f"format={format!r}: give one of {', '.join(FORMATS)}")
    if format == "python":
        from hyperbrace.htmlreport.data import best_config_code

        best_record(study)  # raises when there is no completed trial
        return best_config_code(study)
    record = best_record(study)
    if format == "json":
        return json.dumps(record, indent=2, default=repr)
    lines = []
    for key, value in record.items():
        if isinstance(value, dict):
            lines.append(f"{key}:" + ("" if value else " {}"))
            lines.extend(f"  {_yaml_scalar(str(k))[1:-1] if str(k).isidentifier() else _yaml_scalar(str(k))}: "
                         f"{_yaml_scalar(v)}" for k, v in value.items())
        else:
            lines.append(f"{key}: {_yaml_scalar(value)}")
    return "\n".join(lines)
