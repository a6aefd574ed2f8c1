"""A study's trials as the report and the exports show them: rows of real values, the space, the best config.

Nothing here needs Plotly or pandas: :func:`trial_rows` feeds the HTML table, ``SearchResult.trials_dataframe()``
and ``hyperbrace trials --format csv|json`` alike.

>>> import optuna
>>> study = optuna.create_study()
>>> study.add_trial(optuna.trial.create_trial(value=0.25, params={"lr": 0.01},
...     distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1, log=True)},
...     user_attrs={"hb.values": {"lr": 0.01}, "hb.steps": 3}))
>>> row = trial_rows(study)[0]
>>> row["trial"], row["state"], row["loss"], row["lr"], row["epochs"]
(0, 'COMPLETE', 0.25, 0.01, 3)
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hyperbrace.budget import REUSED_ATTR, is_reused, may_be_best
from hyperbrace.display import trial_label
from hyperbrace.metric import Metric, metric_of
from hyperbrace.result import _steps_run as steps_run

__all__ = ["completed", "worker_label", "trial_rows", "param_names", "space_rows", "best_config_code",
           "error_summary", "steps_run", "best_trial", "REUSED_COLUMN"]

#: The trials table's column saying where a trial reused from an earlier version of the study ran (``v1:12``);
#: present only in a version that reused trials (:mod:`hyperbrace.versions`).
REUSED_COLUMN = "reused from"


def completed(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]


def worker_label(trial: FrozenTrial) -> str:
    """``host pid`` of the process that ran the trial (``hb.worker`` is ``host:pid:start``).

    >>> from optuna.trial import create_trial
    >>> worker_label(create_trial(value=1.0, user_attrs={"hb.worker": "node1:4242:99"}))
    'node1 4242'
    """
    worker = trial.user_attrs.get("hb.worker")
    if not worker:
        return "unknown"
    host, _, rest = str(worker).partition(":")
    return f"{host} {rest.partition(':')[0]}".strip()


def error_summary(trial: FrozenTrial) -> str:
    """The last line of a failed trial's stored error (its type and message)."""
    error = trial.user_attrs.get("hb.error")
    if not error:
        return ""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def real_values(trial: FrozenTrial) -> dict[str, Any]:
    return dict(trial.user_attrs.get("hb.values", trial.params))


def param_names(trials: list[FrozenTrial]) -> list[str]:
    names: list[str] = []
    for trial in trials:
        for name in real_values(trial):
            if name not in names:
                names.append(name)
    return names


def _duration(trial: FrozenTrial) -> float | None:
    if trial.datetime_start is None:
        return None
    end = trial.datetime_complete or (datetime.datetime.now() if trial.state == TrialState.RUNNING else None)
    return None if end is None else round((end - trial.datetime_start).total_seconds(), 3)


def trial_rows(study: optuna.Study, directory: Path | None = None, metric: Metric | None = None) -> list[dict[str, Any]]:
    """One dict per trial: number, state, the metric (as returned), each hyperparameter's real value, duration
    (seconds; a running trial's so far), epochs, the error's summary, the saved model file, the start time.

    In a version of a study that reused trials from earlier versions, a ``reused from`` column (after the state)
    says where each reused trial ran (``v1:12``; empty for the version's own trials)."""
    metric = metric or metric_of(study)
    trials = study.get_trials(deepcopy=False)
    names = param_names(trials)
    any_reused = any(is_reused(t) for t in trials)
    rows = []
    for t in trials:
        values = real_values(t)
        model = t.user_attrs.get("hb.model")
        if model is not None and directory is not None and not (Path(directory) / model).exists():
            model = None  # dropped from the kept best, or saved on another machine
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name}
        if any_reused:
            row[REUSED_COLUMN] = trial_label(t) if is_reused(t) else None
        row[metric.name] = metric.show(t.value)
        for name in names:
            row[name] = values.get(name)
        row.update({
            "duration_s": _duration(t), "epochs": steps_run(t), "error": error_summary(t) or None, "model": model,
            "started": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
            "worker": worker_label(t) if t.user_attrs.get("hb.worker") else None,
        })
        rows.append(row)
    return rows


def space_rows(study: optuna.Study) -> list[dict[str, str]]:
    """The search space: each hyperparameter's template (as written, and where), the engine's distribution, and how
    many trials sampled it (conditional ones are sampled only where their branch ran)."""
    templates: dict[str, str] = {}
    where: dict[str, str] = {}
    for entry in study.user_attrs.get("hyperbrace.space", []) or []:  # name, distribution, file, line (run.py)
        if isinstance(entry, dict) and "name" in entry:
            templates[str(entry["name"])] = str(entry.get("distribution", ""))
            if entry.get("file"):
                where[str(entry["name"])] = f"{Path(str(entry['file'])).name}:{entry.get('line', '')}"
    for entry in study.user_attrs.get("hyperbrace.templates", []) or []:  # older studies: "name: text"
        name, _, text = str(entry).partition(": ")
        templates.setdefault(name, text)
    distributions: dict[str, str] = {}
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        for name, dist in t.distributions.items():
            distributions[name] = _describe(dist)
            counts[name] = counts.get(name, 0) + 1
    names = list(templates) + [n for n in distributions if n not in templates]
    return [{"name": n, "template": templates.get(n, ""), "where": where.get(n, ""),
             "distribution": distributions.get(n, "(not sampled yet)"), "trials": str(counts.get(n, 0))}
            for n in names]


def _describe(dist: optuna.distributions.BaseDistribution) -> str:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return f"categorical {list(dist.choices)!r}"
    if isinstance(dist, (FloatDistribution, IntDistribution)):
        kind = "float" if isinstance(dist, FloatDistribution) else "int"
        extra = ", log" if dist.log else (f", step {dist.step}" if dist.step not in (None, 1) else "")
        return f"{kind} [{dist.low}, {dist.high}{extra}]"
    return repr(dist)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best trial that :func:`hyperbrace.budget.may_be_best` allows: a trial reused from an earlier version of
    the study only if it is a whole configuration of this version's space (``SearchResult.best_trial`` alike).

    >>> import optuna
    >>> study = optuna.create_study()
    >>> study.add_trial(optuna.trial.create_trial(value=0.5))
    >>> study.add_trial(optuna.trial.create_trial(value=0.1, user_attrs={REUSED_ATTR: {"complete": False}}))
    >>> best_trial(study).value  # the partial reused trial is prior knowledge, not a result of this space
    0.5
    """
    done = [t for t in completed(study) if may_be_best(t)]
    return min(done, key=lambda t: t.value) if done else None


def model_function_name(study: optuna.Study) -> str:
    """The model function's name: from the recorded search space, else the study's default name
    (``<script>.<function>``), else ``create_model``."""
    for entry in study.user_attrs.get("hyperbrace.space", []) or []:
        if isinstance(entry, dict) and str(entry.get("function", "")).isidentifier():
            return str(entry["function"])
    last = study.study_name.rsplit(".", 1)[-1]
    return last if last.isidentifier() else "create_model"


def best_config_code(study: optuna.Study) -> str:
    """Python to paste into a final training script: the best trial's real values, and the exact re-run.

    >>> import optuna
    >>> study = optuna.create_study(study_name="mnist.create_model")
    >>> study.add_trial(optuna.trial.create_trial(value=0.1, params={"units": 1},
    ...     distributions={"units": optuna.distributions.CategoricalDistribution([0, 1])},
    ...     user_attrs={"hb.values": {"units": 512}}))
    >>> print(best_config_code(study))  # doctest: +ELLIPSIS
    # Best of 1 trials: trial 0, loss 0.1
    best_run = {
        'units': 512,
    }
    ...
    """
    metric = metric_of(study)
    trial = best_trial(study)
    if trial is None:
        return "# No completed trial yet: nothing to copy."
    trials = study.get_trials(deepcopy=False)
    own = sum(1 for t in trials if not is_reused(t))
    of = f"{own} trials" + (f" and {len(trials) - own} reused from earlier versions" if own < len(trials) else "")
    which = f"trial {trial.number}"
    if is_reused(trial):
        source = trial.user_attrs[REUSED_ATTR]
        which = f"trial {trial_label(trial)} (run in version {source.get('version', '?')}, reused here)"
    lines = [f"# Best of {of}: {which}, {metric.name} {metric.show(trial.value):.6g}", "best_run = {"]
    for name, value in real_values(trial).items():
        lines.append(f"    {name!r}: {value!r},")
    lines.append("}")
    function = model_function_name(study)
    if real_values(trial) != dict(trial.params):
        lines.append("# Values inside choice() that are objects appear above as their source text; to run exactly")
        lines.append("# this trial again, pass the engine's values (objects by their index in the choice):")
    else:
        lines.append("# To train this configuration again (e.g. on all the data):")
    lines.append("from hyperbrace import evaluate")
    lines.append(f"result = evaluate({function}, {dict(trial.params)!r}, data)")
    return "\n".join(lines)
