"""The report's figures: Optuna's visualization module where it has the plot, Plotly Express for the timeline.

Every function takes a study and returns a Plotly figure, or raises :class:`NoPlot` with the reason it cannot be
drawn yet (no completed trial, one parameter, nothing reported): the report shows the reason instead.

Plotly and pandas are imported here only (``pip install hyperbrace[report]``); the core does not need them.
"""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hyperbrace.budget import is_reused, may_be_best
from hyperbrace.display import quiet_optuna_logs
from hyperbrace.metric import Metric
from hyperbrace.htmlreport.data import completed, worker_label

__all__ = ["NoPlot", "PLOTS", "history", "importances", "parallel_coordinates", "slices", "learning_curves",
           "timeline"]

#: Above this many trials, the plots that draw one line per trial (parallel coordinates, learning curves) show the
#: best and the most recent ones: a browser draws a few hundred lines at once, not thousands.
MAX_LINES = 300

_STATE_COLORS = {"COMPLETE": "#1f77b4", "PRUNED": "#ff7f0e", "FAIL": "#d62728", "RUNNING": "#2ca02c",
                 "WAITING": "#7f7f7f"}


class NoPlot(Exception):
    """Why a figure cannot be drawn for this study (yet)."""


def _quiet() -> warnings.catch_warnings:  # type: ignore[type-arg]
    catcher = warnings.catch_warnings()
    catcher.__enter__()
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    warnings.simplefilter("ignore", UserWarning)
    return catcher


def _call(plot: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    catcher = _quiet()
    try:
        return plot(*args, **kwargs)
    finally:
        catcher.__exit__(None, None, None)


def _subset(study: optuna.Study, trials: list[FrozenTrial]) -> optuna.Study:
    """An in-memory study holding ``trials`` only (the plots draw what the study holds)."""
    catcher = _quiet()
    try:
        with quiet_optuna_logs():
            copy = optuna.create_study(direction=study.direction)
        copy.add_trials([t for t in trials if t.state != TrialState.RUNNING or t.datetime_start])
    finally:
        catcher.__exit__(None, None, None)
    return copy


def _few(study: optuna.Study, trials: list[FrozenTrial], metric: Metric, limit: int = MAX_LINES) -> tuple[optuna.Study, str]:
    """At most ``limit`` trials: the best half and the most recent half; and a note saying so when cut."""
    if len(trials) <= limit:
        return (study if len(trials) == len(study.get_trials(deepcopy=False)) else _subset(study, trials)), ""
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
                  key=lambda t: t.value)  # stored values: lower is better
    keep = {t.number for t in done[: limit // 2]}
    for t in sorted(trials, key=lambda t: t.number, reverse=True):
        if len(keep) >= limit:
            break
        keep.add(t.number)
    chosen = [t for t in trials if t.number in keep]
    return _subset(study, chosen), f" ({len(chosen)} of {len(trials)}: the {limit // 2} best and the most recent)"


def _style(fig: Any, title: str) -> Any:
    fig.update_layout(title=title, template="plotly_white", margin=dict(l=60, r=20, t=50, b=50), height=420)
    return fig


def history(study: optuna.Study, metric: Metric) -> Any:
    """Each completed trial's value and the best value so far (Optuna's optimization history)."""
    import plotly.graph_objects as go

    trials = completed(study)
    if not trials:
        raise NoPlot("no completed trial yet")
    partial = [t for t in trials if not may_be_best(t)]
    note = ""
    if partial:  # reused from an earlier version without a parameter of this space: not a result the best may be
        if len(partial) == len(trials):
            raise NoPlot("no completed trial of this space yet (the reused trials lack a parameter added since)")
        left_out = {t.number for t in partial}
        study = _subset(study, [t for t in study.get_trials(deepcopy=False) if t.number not in left_out])
        trials = completed(study)  # the copy's numbers
        note = f" ({len(partial)} reused trials without every parameter of this space left out)"
    if metric.sign == 1:
        fig = _call(optuna.visualization.plot_optimization_history, study, target_name=metric.name)
    else:
        # A maximized metric is stored negated: plot it as the model returned it, and its running best (Optuna
        # draws no best line for a custom target).
        fig = _call(optuna.visualization.plot_optimization_history, study, target=metric.shown,
                    target_name=metric.name)
        numbers = [t.number for t in trials]
        best, running = [], None
        for t in trials:
            value = metric.shown(t)
            running = value if running is None else max(running, value)
            best.append(running)
        fig.add_trace(go.Scatter(x=numbers, y=best, mode="lines", name="Best Value"))
    return _style(fig, f"Optimization history: {metric.name} of each trial, and the best so far{note}")


def importances(study: optuna.Study, metric: Metric) -> Any:
    """How much each hyperparameter's value explains the loss (Optuna's default evaluator, PED-ANOVA)."""
    trials = completed(study)
    names = {name for t in trials for name in t.params}
    if len(trials) < 2:
        raise NoPlot(f"importances need at least 2 completed trials ({len(trials)} so far)")
    if len(names) < 2:
        raise NoPlot("importances compare hyperparameters: the search has fewer than 2")
    try:
        fig = _call(optuna.visualization.plot_param_importances, study, target_name=metric.name)
    except (RuntimeError, ValueError) as exc:
        raise NoPlot(f"importances cannot be computed yet: {exc}") from None
    return _style(fig, "Hyperparameter importances (PED-ANOVA)")


def _with_params(study: optuna.Study, metric: Metric) -> tuple[list[FrozenTrial], dict[str, Any]]:
    """The completed trials, and the keyword arguments that make Optuna plot the metric as the model returned it."""
    trials = completed(study)
    if not trials:
        raise NoPlot("no completed trial yet")
    if not any(t.params for t in trials):
        raise NoPlot("the trials have no hyperparameters")
    kwargs: dict[str, Any] = {"target_name": metric.name}
    if metric.sign != 1:
        kwargs["target"] = metric.shown
    return trials, kwargs


def parallel_coordinates(study: optuna.Study, metric: Metric) -> Any:
    """Every completed trial as a line across its hyperparameters' values, coloured by the loss."""
    trials, kwargs = _with_params(study, metric)
    subset, note = _few(study, trials, metric)
    fig = _call(optuna.visualization.plot_parallel_coordinate, subset, **kwargs)
    return _style(fig, f"Parallel coordinates{note}")


def slices(study: optuna.Study, metric: Metric) -> Any:
    """The loss against each hyperparameter's value, one panel per hyperparameter."""
    trials, kwargs = _with_params(study, metric)
    fig = _call(optuna.visualization.plot_slice, study, **kwargs)
    n = len({name for t in trials for name in t.params})
    fig = _style(fig, "Slices: the loss against each hyperparameter")
    fig.update_layout(width=max(700, 300 * n) if n > 3 else None)
    return fig


def learning_curves(study: optuna.Study, metric: Metric) -> Any:
    """Each trial's reported values by step (epoch), pruned trials included; an x marks where pruning stopped one."""
    import plotly.graph_objects as go

    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values
              and t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)]
    if not trials:
        raise NoPlot("no trial reported intermediate values (Keras fits report each epoch; other code calls "
                     "hyperbrace.report(value, step))")
    subset, note = _few(study, trials, metric)
    fig = _call(optuna.visualization.plot_intermediate_values, subset)
    pruned = [t for t in subset.get_trials(deepcopy=False) if t.state == TrialState.PRUNED and t.intermediate_values]
    if pruned:
        last = [max(t.intermediate_values) for t in pruned]
        fig.add_trace(go.Scatter(
            x=last, y=[t.intermediate_values[s] for t, s in zip(pruned, last)], mode="markers",
            marker=dict(symbol="x", size=10, color="#d62728"), name="pruned here",
            text=[f"trial {t.number} pruned at step {s}" for t, s in zip(pruned, last)], hoverinfo="text",
        ))
    fig.update_layout(xaxis_title="step (epoch)", yaxis_title="reported value (lower is better)")
    return _style(fig, f"Learning curves: {len(pruned)} pruned trials marked x{note}")


def timeline(study: optuna.Study, metric: Metric) -> Any:
    """When each trial ran, one row per worker process, coloured by state."""
    import pandas as pd
    import plotly.express as px

    now = datetime.datetime.now()
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.datetime_start is None or is_reused(t):  # a reused trial ran in an earlier version of the study
            continue
        end = t.datetime_complete or now
        rows.append({"worker": worker_label(t), "start": t.datetime_start, "end": max(end, t.datetime_start),
                     "state": t.state.name, "trial": t.number})
    if not rows:
        raise NoPlot("no trial has started yet")
    frame = pd.DataFrame(rows)
    fig = px.timeline(frame, x_start="start", x_end="end", y="worker", color="state", hover_data=["trial"],
                      color_discrete_map=_STATE_COLORS)
    workers = frame["worker"].nunique()
    fig = _style(fig, f"Timeline: {len(rows)} trials on {workers} worker process{'es' if workers != 1 else ''}")
    fig.update_layout(height=max(300, min(900, 120 + 28 * workers)))
    fig.update_yaxes(title="worker (host pid)")
    return fig


#: The report's figures, in order: (key, title, function).
PLOTS: list[tuple[str, str, Callable[[optuna.Study, Metric], Any]]] = [
    ("history", "Optimization history", history),
    ("importances", "Hyperparameter importances", importances),
    ("parallel", "Parallel coordinates", parallel_coordinates),
    ("slices", "Slices", slices),
    ("curves", "Learning curves", learning_curves),
    ("timeline", "Timeline", timeline),
]

