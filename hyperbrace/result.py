"""The result of a search: best parameters, best model, the study and every trial.

It unpacks like Hyperas' return value::

    best_run, best_model = minimize(create_model, data, max_evals=50)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hyperbrace import integrations, model_files
from hyperbrace.budget import REUSED_ATTR, is_reused, may_be_best
from hyperbrace.display import space_table, state_counts, trial_label, trials_table
from hyperbrace.metric import metric_of
from hyperbrace.prune_on import PRUNE_ON_ATTR
from hyperbrace.versions import StudyVersion, root_name, study_versions

__all__ = ["SearchResult", "TrialRecord", "SearchSpace", "SPACE_ATTR"]

#: The study attribute holding the search space (hyperbrace.template.space_entries), written when a search starts.
SPACE_ATTR = "hyperbrace.space"


class SearchSpace(list):
    """The search space, one dict per template (``name``, ``distribution``, ``file``, ``line``, ``function``,
    ``weak``); printed, a table (as at the start of a search, and ``hyperbrace show --space``)."""

    def __str__(self) -> str:
        return space_table(self)


@dataclass(frozen=True)
class TrialRecord:
    """One trial as a row of the results table."""

    number: int
    state: str  #: "COMPLETE", "PRUNED", "FAIL", "RUNNING" or "WAITING"
    loss: float | None
    params: dict[str, Any]  #: real values (for objects inside ``choice``: their source text)
    extras: dict[str, Any]  #: the extra keys the model returned
    duration: float | None
    error: str | None
    model_path: Path | None  #: the saved model, while it is among the kept best

class SearchResult:
    """What :func:`hyperbrace.minimize` returns.

    * ``best_run``: the best trial's parameters, name -> real value;
    * ``best_model``: the best trial's saved model, loaded from the run directory on first access;
    * ``best_loss``, ``best_trial`` (Optuna's ``FrozenTrial``), ``best_params`` (the engine's raw values);
    * ``study``: the Optuna study; ``trials``: every trial as a :class:`TrialRecord`;
    * ``directory``: the run directory (models, logs, and the journal file by default);
    * ``versions``: the study's versions (one per space it was run with, see :mod:`hyperbrace.versions`);
      ``reused``: the trials this version took over from earlier ones (not in ``trials``; one may be the best).

    >>> import tempfile
    >>> from hyperbrace import minimize, choice, uniform
    >>> def objective():
    ...     activation = {{choice(["relu", "tanh"])}}
    ...     x = {{uniform(-1, 1)}}
    ...     return {"loss": x * x + (activation == "tanh"), "model": {"activation": activation, "x": x}}
    >>> result = minimize(objective, max_evals=10, seed=1, directory=tempfile.mkdtemp(), show_progress=False)
    >>> sorted(result.best_run), len(result.trials), result.trials[0].state
    (['activation', 'x'], 10, 'COMPLETE')
    >>> best_run, best_model = result  # as Hyperas' optim.minimize returns them
    >>> best_model == {"activation": best_run["activation"], "x": best_run["x"]}
    True
    >>> result.load_model(result.best_trial.number) == best_model  # any kept trial's model, by number
    True
    >>> [(entry["name"], entry["distribution"]) for entry in result.search_space]
    [('activation', 'choice(["relu", "tanh"])'), ('x', 'uniform(-1, 1)')]
    """

    def __init__(self, study: optuna.Study, directory: Path, load_options: dict[str, Any] | None = None) -> None:
        self.study = study
        self.directory = Path(directory)
        self._load_options = load_options or {}
        self._best_model: Any = None
        self._best_model_loaded = False

    # -- the best ------------------------------------------------------------------------------------------------
    @property
    def best_trial(self) -> optuna.trial.FrozenTrial | None:
        # A reused trial (from an earlier version) may be the best if it is a whole configuration of this space.
        completed = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if may_be_best(t)]
        return min(completed, key=lambda t: t.value) if completed else None

    @property
    def best_run(self) -> dict[str, Any]:
        trial = self.best_trial
        return {} if trial is None else dict(trial.user_attrs.get("hb.values", trial.params))

    @property
    def best_params(self) -> dict[str, Any]:
        trial = self.best_trial
        return {} if trial is None else dict(trial.params)

    @property
    def best_loss(self) -> float | None:
        trial = self.best_trial
        return None if trial is None else trial.value

    @property
    def best_value(self) -> float | None:
        """The best trial's value as the model returned it: the loss, or the metric :func:`maximize` raised."""
        trial = self.best_trial
        return None if trial is None else metric_of(self.study).show(trial.value)

    @property
    def best_model(self) -> Any:
        if not self._best_model_loaded:
            trial = self.best_trial
            self._best_model = None if trial is None else self.load_model(trial.number)
            self._best_model_loaded = True
        return self._best_model

    def load_model(self, number: int | None = None, **options: Any) -> Any:
        """Load the saved model of trial ``number`` (default: the best). ``None`` if that trial saved none.

        Keyword options go to the framework's loader (e.g. ``custom_objects=`` for Keras).
        """
        if number is None:
            trial = self.best_trial
            if trial is None:
                return None
            number = trial.number
        trial = next((t for t in self.study.get_trials(deepcopy=False) if t.number == number), None)
        relative = None if trial is None else trial.user_attrs.get("hb.model")
        if relative is None:
            return None
        path = model_files.model_path(self.directory, relative)  # only inside the run directory's models/
        if not path.exists() and "hb.artifact" in trial.user_attrs:
            # Trained on another machine: the model came home through the artifact store (hyperbrace.artifacts).
            from hyperbrace.artifacts import fetch_model

            fetch_model(self.directory, trial.user_attrs["hb.artifact"])
        if not path.exists():
            raise FileNotFoundError(
                f"trial {number}'s model was saved at {path}, which no longer exists (only the best "
                "keep_models models are kept; it may have been saved on another machine)"
            )
        model_files.check_owner(path, trial.user_attrs.get("hb.model_owner")
                                or model_files.owner_of(self.study.study_name, number))
        return integrations.for_path(path).load(path, **{**self._load_options, **options})

    @property
    def search_space(self) -> SearchSpace:
        """Every template of the model (and of the helpers it calls): name, distribution and where it is written.

        ``print(result.search_space)`` shows it as a table; names from weak fallback rules are flagged.
        """
        return SearchSpace(self.study.user_attrs.get(SPACE_ATTR, []))

    # -- all trials ------------------------------------------------------------------------------------------------
    @property
    def trials(self) -> list[TrialRecord]:
        """This search's trials (for a new version of a study: its own, without those reused from earlier ones)."""
        return self._records(reused=False)

    @property
    def reused(self) -> list[TrialRecord]:
        """The trials reused from earlier versions of the study (their ``number`` is the one in this version;
        ``extras["hb.reused_from"]`` says which version and trial they ran as)."""
        return self._records(reused=True)

    @property
    def versions(self) -> list[StudyVersion]:
        """The versions of this study, oldest first: one per space it was run with (see :mod:`hyperbrace.versions`)."""
        return study_versions(self.study._storage, root_name(self.study))

    def _records(self, reused: bool) -> list[TrialRecord]:
        records = []
        for t in self.study.get_trials(deepcopy=False):
            if is_reused(t) != reused:
                continue
            attrs = t.user_attrs
            extras = {k: v for k, v in attrs.items() if not k.startswith("hb.") or k == REUSED_ATTR}
            model = attrs.get("hb.model")
            try:
                model_path = None if model is None else model_files.model_path(self.directory, model)
            except model_files.UnsafeModelPathError:
                model_path = None
            records.append(
                TrialRecord(
                    number=t.number, state=t.state.name, loss=t.value, params=dict(attrs.get("hb.values", t.params)),
                    extras=extras, duration=None if t.duration is None else t.duration.total_seconds(), error=attrs.get("hb.error"),
                    model_path=model_path if model_path is not None and model_path.exists() else None,
                )
            )
        return records

    def summary(self, top: int = 5) -> str:
        """A text summary: the trial counts and a table of the ``top`` best trials."""
        everything = self.study.get_trials(deepcopy=False)
        trials = [t for t in everything if not is_reused(t)]
        metric = metric_of(self.study)
        head = f"Study {self.study.study_name!r}: {len(trials)} trials ({state_counts(trials)})"
        if len(trials) < len(everything):
            head += f", and {len(everything) - len(trials)} reused from earlier versions"
        saved = _pruning_savings(trials)
        if saved:
            learnt = self.study.user_attrs.get(PRUNE_ON_ATTR)
            if isinstance(learnt, dict):  # which metric prune_on="auto" judged by: worth seeing beside its effect
                saved += f" Judged by {learnt.get('name')} (prune_on='auto', learnt from trial {learnt.get('trial')})."
            head += f"\n{saved}"
        table = trials_table(everything, top, metric)
        done = sum(1 for t in everything if may_be_best(t))
        if done > top:
            table += f"\n(the best {top} of {done} completed trials by {metric.name})"
        return f"{head}\n{table}"

    # -- exports ---------------------------------------------------------------------------------------------------
    def trials_dataframe(self) -> Any:
        """Every trial as a pandas DataFrame, one row per trial: number, state, the loss (or the maximized metric,
        as returned), each hyperparameter's real value, duration, epochs, error, model file, start, worker.

        Needs pandas (``pip install hyperbrace[report]``). Optuna's own ``result.study.trials_dataframe()`` gives
        the engine's raw values instead.
        """
        try:
            import pandas
        except ImportError:
            raise ImportError("trials_dataframe() needs pandas: pip install 'hyperbrace[report]'") from None
        from hyperbrace.htmlreport.data import trial_rows

        rows = trial_rows(self.study, self.directory)
        return pandas.DataFrame(rows).set_index("trial") if rows else pandas.DataFrame()

    def export_best(self, format: str = "json") -> str:
        """The best trial's real values as text to paste elsewhere: ``"json"``, ``"yaml"`` or ``"python"`` (a
        snippet that also runs the configuration again with :func:`hyperbrace.evaluate`)."""
        from hyperbrace.export import best_as

        return best_as(self.study, format)

    # -- the report and its figures ----------------------------------------------------------------------------
    def report(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the search's HTML report (one file; it opens offline) and return its path.

        By default ``<run directory>/report.html``. Needs Plotly and pandas (``pip install hyperbrace[report]``).
        """
        from hyperbrace.htmlreport import write_report

        return write_report(self.study, path or self.directory / "report.html", self.directory)

    def _figure(self, key: str) -> Any:
        from hyperbrace.htmlreport import figure

        return figure(self.study, key)

    def plot_history(self) -> Any:
        """Plotly figure: each completed trial's loss and the best so far (shows inline in a notebook)."""
        return self._figure("history")

    def plot_importances(self) -> Any:
        """Plotly figure: the hyperparameters' importances (Optuna's PED-ANOVA)."""
        return self._figure("importances")

    def plot_parallel_coordinates(self) -> Any:
        """Plotly figure: every completed trial across its hyperparameters, coloured by the loss."""
        return self._figure("parallel")

    def plot_slices(self) -> Any:
        """Plotly figure: the loss against each hyperparameter's value."""
        return self._figure("slices")

    def plot_learning_curves(self) -> Any:
        """Plotly figure: each trial's reported values by epoch, pruned trials marked where they stopped."""
        return self._figure("curves")

    def plot_timeline(self) -> Any:
        """Plotly figure: when each trial ran, one row per worker process."""
        return self._figure("timeline")

    def _repr_html_(self) -> str:
        """Jupyter shows a result as its counts and a table of the best trials."""
        import html

        everything = self.study.get_trials(deepcopy=False)
        trials = [t for t in everything if not is_reused(t)]  # a version's own; reused ones may still be the best
        top = sorted((t for t in everything if may_be_best(t)), key=lambda t: t.value)[:10]
        metric = metric_of(self.study)
        names: list[str] = []
        for t in top:
            for name in t.user_attrs.get("hb.values", t.params):
                if name not in names:
                    names.append(name)
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in ["trial", metric.name, *names])
        rows = []
        for t in top:
            values = t.user_attrs.get("hb.values", t.params)
            cells = [trial_label(t), f"{metric.show(t.value):.6g}", *(str(values.get(n, "")) for n in names)]
            rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        table = (f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>" if rows
                 else "<p>No completed trial yet.</p>")
        caption = (f"<p><b>{html.escape(self.study.study_name)}</b>: {len(trials)} trials "
                   f"({html.escape(state_counts(trials))}"
                   + (f", and {len(everything) - len(trials)} reused from earlier versions" if len(trials) < len(everything) else "")
                   + f"); the best {len(top)} by {html.escape(metric.name)}; "
                   f"run directory <code>{html.escape(str(self.directory))}</code></p>")
        return caption + table

    # -- Hyperas-style unpacking --------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        yield self.best_run
        yield self.best_model

    def __repr__(self) -> str:
        return f"SearchResult(best_loss={self.best_loss!r}, best_run={self.best_run!r}, directory='{self.directory}')"


def _steps_run(trial: optuna.trial.FrozenTrial) -> int:
    """How many steps (epochs) a trial ran: its ``report()`` calls, or its stored intermediate values."""
    return int(trial.user_attrs.get("hb.steps", len(trial.intermediate_values)))


def _pruning_savings(trials: list[optuna.trial.FrozenTrial]) -> str:
    """One line on what pruning saved, in epochs (the steps trials report), when some trial was pruned.

    A pruned trial would have run as long as the longest completed trial; that is an estimate, so it says "about".

    >>> from optuna.trial import create_trial, TrialState
    >>> done = create_trial(value=0.1, intermediate_values={s: 0.1 for s in range(1, 11)})
    >>> cut = create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.9, 2: 0.8})
    >>> _pruning_savings([done, cut, cut])
    'Pruning stopped 2 of 3 trials early: 14 epochs trained instead of about 30 (16 saved, 53%).'
    """
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    full = [_steps_run(t) for t in trials if t.state == TrialState.COMPLETE]
    if not pruned or not any(full):
        return ""
    planned = max(full)
    ran = sum(_steps_run(t) for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    saved = sum(max(planned - _steps_run(t), 0) for t in pruned)
    finished = sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    return (
        f"Pruning stopped {len(pruned)} of {finished} trials early: {ran} epochs trained instead of about "
        f"{ran + saved} ({saved} saved, {saved / (ran + saved):.0%})."
    )
