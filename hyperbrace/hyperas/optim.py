"""Hyperas' ``optim``: ``minimize``, ``best_models`` and ``best_ensemble``, running on hyperbrace.

Change ``from hyperas import optim`` to ``from hyperbrace.hyperas import optim`` and the call stays::

    best_run, best_model = optim.minimize(model=create_model, data=data, algo=tpe.suggest, max_evals=5,
                                          trials=Trials())

What happens in one call:

1. ``data(*data_args)`` runs once; its return value gives the model's arguments and its local variables are
   visible inside the model, as under Hyperas (:mod:`hyperbrace.hyperas._data`).
2. The model's templates are compiled with hyperopt's meanings (:mod:`hyperbrace.hyperas.distributions`) and
   Hyperas' names (:mod:`hyperbrace.hyperas._naming`).
3. A fresh study runs ``max_evals`` trials (minus any already in ``trials``, as hyperopt counts) through
   hyperbrace's trial loop: a trial that raises is recorded as failed and the search goes on (the first three
   failing alike stop it with the error), each trial's output is kept, Keras is cleaned up between trials.
4. The trials are written into ``trials``; the best trials' models are kept in memory (not every model, as
   hyperopt did), and ``best_run`` is hyperopt's argmin (indices for ``choice``) or, with ``eval_space=True``,
   the values.

Where runs go: a Hyperas script expects nothing on disk and a fresh search each time it runs, so each call
studies in a new temporary directory that is deleted when the call returns. ``keep_temp=True`` (Hyperas kept its
generated ``temp_model.py`` with it) keeps that directory and prints where it is: the Optuna journal
(``study.journal``), each trial's log and the best models. ``directory=`` puts the run directory there instead and
keeps it. A call never resumes an earlier one.
"""

from __future__ import annotations

import datetime
import heapq
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from hyperbrace._context import TrialContext, current_trial
from hyperbrace.hyperas._algorithms import engine_algorithm
from hyperbrace.hyperas._data import model_arguments, run_data, with_data_globals
from hyperbrace.hyperas._naming import hyperas_names
from hyperbrace.hyperas._trials import (
    Trials,
    TrialRecord,
    best_trial_of,
    completed_by_loss,
    record_trials,
    utcnow,
)
from hyperbrace.hyperas.distributions import DISTRIBUTIONS
from hyperbrace.hyperas.ensemble import VotingModel
from hyperbrace.display import Progress, quiet_optuna_logs
from hyperbrace.result import SearchResult
from hyperbrace.search import SearchPlan
from hyperbrace.space import Choice, Distribution
from hyperbrace.storage import RunStorage, default_study_name
from hyperbrace.template import CompiledModel, compile_model
from hyperbrace.trial import STATUS_FAIL, STATUS_OK, TrialOutcome, TrialSettings

__all__ = ["minimize", "best_models", "best_ensemble"]


def minimize(
    model: Callable[..., Any],
    data: Callable[..., Any] | None,
    algo: Any = None,
    max_evals: int = 10,
    trials: Any = None,
    functions: Sequence[Callable[..., Any]] | None = None,
    rseed: int | None = 1337,
    notebook_name: str | None = None,
    verbose: bool = True,
    eval_space: bool = False,
    return_space: bool = False,
    keep_temp: bool = False,
    data_args: Sequence[Any] | None = None,
    *,
    directory: str | Path | None = None,
) -> tuple[Any, ...]:
    """Search the ``{{...}}`` hyperparameters of ``model``; returns ``(best_run, best_model)``.

    Args:
        model: the model function; it returns ``{"loss": ..., "status": STATUS_OK, "model": model}`` (or a loss).
        data: called once; its return value gives the model's arguments, its local variables are visible
            inside the model.
        algo: ``tpe.suggest``, ``rand.suggest`` or ``anneal.suggest`` (hyperopt's or ours), or a hyperbrace
            ``algo`` name.
        max_evals: the number of trials, counting those already in ``trials`` (as hyperopt does).
        trials: a :class:`~hyperbrace.hyperas.Trials` or a ``hyperopt.Trials``; filled with the trials.
            ``None``: a new one.
        functions: helper functions that should also see ``data()``'s local variables (Hyperas copied them
            into its generated module). Not needed for anything else: the model sees its own module's globals.
        rseed: the random seed; the same seed gives the same suggestions.
        notebook_name: ignored; notebooks, IPython and Colab work without it.
        verbose: show the progress bar, each trial's output and the table of the best trials.
        eval_space: ``best_run`` with the values (an object option's source text) instead of ``choice`` indices.
        return_space: also return the space: parameter name -> the distribution it was drawn from (for a template
            no trial reached, the distribution as written).
        keep_temp: keep the run directory (journal, logs, best models) and print its path.
        data_args: arguments for ``data``.
        directory: put the run directory under this folder (and keep it) instead of a temporary one.

    Returns:
        ``(best_run, best_model)``, or ``(best_run, best_model, space)`` with ``return_space=True``.
        ``best_model`` is the ``"model"`` of the best trial's result (``None`` if the model returned none).

    Example (a search needs a model function in a file or notebook; see docs/hyperas.md)::

        best_run, best_model = optim.minimize(model=create_model, data=data, algo=tpe.suggest,
                                              max_evals=5, trials=Trials())
    """
    search = _search(model, data, algo, max_evals, trials, functions, rseed, verbose, data_args, keep_temp,
                     directory, models_in_memory=1)
    best = best_trial_of(search.trials.trials)
    best_run = _best_run(best, eval_space)
    best_model = best["result"].get("model")
    if return_space:
        return best_run, best_model, search.space
    return best_run, best_model


def best_models(
    nb_models: int,
    model: Callable[..., Any],
    data: Callable[..., Any] | None,
    algo: Any = None,
    max_evals: int = 10,
    trials: Any = None,
    functions: Sequence[Callable[..., Any]] | None = None,
    rseed: int | None = 1337,
    notebook_name: str | None = None,
    verbose: bool = True,
    keep_temp: bool = False,
    data_args: Sequence[Any] | None = None,
    *,
    directory: str | Path | None = None,
) -> list[Any]:
    """Search as :func:`minimize` does and return the models of the ``nb_models`` best trials, best first.

    (Hyperas' own version returned the *worst* ones.) Trials whose result has no ``"model"`` are skipped, so the
    list is shorter when fewer trials completed with a model. The other arguments are :func:`minimize`'s.
    """
    if not isinstance(nb_models, int) or nb_models < 1:
        raise ValueError(f"nb_models must be a positive integer, got {nb_models!r}")
    search = _search(model, data, algo, max_evals, trials, functions, rseed, verbose, data_args, keep_temp,
                     directory, models_in_memory=nb_models)
    with_models = [t for t in completed_by_loss(search.trials.trials) if t["result"].get("model") is not None]
    return [t["result"]["model"] for t in with_models[:nb_models]]


def best_ensemble(
    nb_ensemble_models: int,
    model: Callable[..., Any],
    data: Callable[..., Any] | None,
    algo: Any = None,
    max_evals: int = 10,
    trials: Any = None,
    voting: str = "hard",
    weights: Sequence[float] | None = None,
    nb_classes: int | None = None,
    functions: Sequence[Callable[..., Any]] | None = None,
    rseed: int | None = 1337,
    notebook_name: str | None = None,
    verbose: bool = True,
    keep_temp: bool = False,
    data_args: Sequence[Any] | None = None,
    *,
    directory: str | Path | None = None,
) -> VotingModel:
    """Search, then return a :class:`VotingModel` of the ``nb_ensemble_models`` best models.

    ``voting="hard"``: majority of the models' predicted classes (weighted by ``weights``); ``"soft"``: the
    (weighted) mean of their probabilities. ``nb_classes`` is the number of classes, if some may never be
    predicted. The other arguments are :func:`minimize`'s.
    """
    models = best_models(nb_ensemble_models, model, data, algo, max_evals, trials, functions, rseed, notebook_name,
                         verbose, keep_temp, data_args, directory=directory)
    if weights is not None and len(weights) != len(models):
        raise ValueError(
            f"{len(weights)} weights given, but the search kept {len(models)} models (asked for "
            f"{nb_ensemble_models}); fewer trials completed with a model than asked"
        )
    return VotingModel(models, voting=voting, weights=weights, nb_classes=nb_classes)


# -- one search ------------------------------------------------------------------------------------------------------


@dataclass
class _Search:
    trials: Any
    space: dict[str, Distribution]


@dataclass
class _TrialNote:
    """What the Hyperas layer sees of one trial while it runs: its values, what the model returned, when."""

    vals: dict[str, Any] = field(default_factory=dict)
    real_vals: dict[str, Any] = field(default_factory=dict)
    returned: Any = None
    book_time: datetime.datetime | None = None


class _Recorder:
    """Collects each trial's hyperopt values and returned result, and keeps the best ``keep`` models in memory."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.notes: dict[int, _TrialNote] = {}
        self.space: dict[str, Distribution] = {}
        self.records: list[TrialRecord] = []
        self._kept: list[tuple[float, int, dict[str, Any]]] = []  # a max-heap by loss: (-loss, -number, result)

    def started(self, context: TrialContext) -> None:
        self.notes[context.number] = _TrialNote(book_time=utcnow())

    def sampled(self, context: TrialContext) -> None:
        note = self.notes[context.number]
        for name, (distribution, raw, _site) in context.sampled.items():
            self.space.setdefault(name, distribution)
            note.vals[name] = distribution.index_of(raw) if isinstance(distribution, Choice) else context.values[name]
            note.real_vals[name] = context.values[name]

    def finished(self, outcome: TrialOutcome) -> None:
        note = self.notes.pop(outcome.number, _TrialNote(book_time=utcnow()))
        returned = note.returned
        result = dict(returned) if isinstance(returned, dict) else {}
        if outcome.state == optuna.trial.TrialState.COMPLETE:
            if not isinstance(returned, dict):
                result = {"loss": outcome.loss, "status": STATUS_OK}
            self._keep_model(outcome.loss, outcome.number, result)
        else:
            result.pop("model", None)
            result["status"] = STATUS_FAIL
            result.setdefault("error", outcome.error or f"the trial ended {outcome.state.name.lower()}")
        self.records.append(TrialRecord(result, note.vals, note.real_vals, note.book_time or utcnow(), utcnow()))

    def _keep_model(self, loss: float, number: int, result: dict[str, Any]) -> None:
        if result.get("model") is None:
            return
        heapq.heappush(self._kept, (-loss, -number, result))
        if len(self._kept) > self.keep:
            _, _, dropped = heapq.heappop(self._kept)  # the worst loss (the latest among equals) leaves memory
            dropped.pop("model", None)


@dataclass
class _HyperasPlan(SearchPlan):
    """The core's search plan, noting each trial's values and returned result for the Hyperas records."""

    recorder: _Recorder = field(default_factory=lambda: _Recorder(1))

    def call_model(self, model: CompiledModel) -> Any:
        context = current_trial()
        self.recorder.started(context)
        try:
            returned = super().call_model(model)
        finally:
            self.recorder.sampled(context)
        self.recorder.notes[context.number].returned = returned
        return returned


def _search(
    model: Callable[..., Any],
    data: Callable[..., Any] | None,
    algo: Any,
    max_evals: int,
    trials: Any,
    functions: Sequence[Callable[..., Any]] | None,
    rseed: int | None,
    verbose: bool,
    data_args: Any,
    keep_temp: bool,
    directory: str | Path | None,
    models_in_memory: int,
) -> _Search:
    if not isinstance(max_evals, int) or isinstance(max_evals, bool) or max_evals < 1:
        raise ValueError(f"max_evals must be a positive integer (the number of trials), got {max_evals!r}")
    trials = Trials() if trials is None else _checked_trials(trials)
    engine_algo = engine_algorithm(algo)
    data_run = run_data(data, data_args)
    overlay = {**data_run.locals, **with_data_globals(functions or (), data_run.locals)}
    compiled = compile_model(model, naming=hyperas_names, globals_overlay=overlay, distributions=DISTRIBUTIONS)
    args, kwargs = model_arguments(compiled.original, data_run)
    model_input = kwargs or args  # what the core's data() hands the model: a tuple spreads, a dict goes by name
    names = list(dict.fromkeys(site.name for site in compiled.sites))

    remaining = max_evals - len(trials)
    recorder = _Recorder(models_in_memory)
    if remaining <= 0:
        return _Search(trials, _space(compiled, recorder))
    base = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="hyperbrace-hyperas-"))
    storage = RunStorage.resolve(None, base, _fresh_study_name(compiled, base))
    keep_dir = keep_temp or directory is not None
    settings = TrialSettings(
        run_dir=storage.run_dir, keep_models=models_in_memory if keep_dir else 0, echo_output=verbose,
    )
    plan = _HyperasPlan(
        model=compiled, data=lambda: model_input, data_args=None, storage=storage, study_name=storage.run_dir.name,
        algo=engine_algo, seed=None if rseed is None else rseed + len(trials), settings=settings,
        max_evals=remaining, recorder=recorder,
    )
    try:
        with quiet_optuna_logs():  # "A new study created..." is noise here
            study = plan.open_study()
        progress = Progress(total=remaining, done=0, best=None, enabled=verbose, label=compiled.name)

        def on_outcome(outcome: TrialOutcome) -> None:
            recorder.finished(outcome)
            progress.advance(len(recorder.records), outcome.loss if outcome.state.name == "COMPLETE" else None)

        try:
            plan.run_trials(on_outcome=on_outcome, study=study)
        finally:
            progress.close()
            record_trials(trials, recorder.records, names)
        if verbose:
            print(SearchResult(study, storage.run_dir).summary())
    finally:
        if keep_dir:
            print(f"hyperbrace: the run directory is kept at {storage.run_dir}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    return _Search(trials, _space(compiled, recorder))


def _space(compiled: CompiledModel, recorder: _Recorder) -> dict[str, Distribution]:
    """Each parameter's distribution, in source order: as built in the trials (the options a choice really had),
    else as written, for a template no trial reached whose arguments are literals."""
    space: dict[str, Distribution] = {}
    for site in compiled.sites:
        distribution = recorder.space.get(site.name, site.static_distribution)
        if distribution is not None and not site.dynamic_name:
            space.setdefault(site.name, distribution)
    for name, distribution in recorder.space.items():  # names computed in the trial (name=f"...")
        space.setdefault(name, distribution)
    return space


def _fresh_study_name(compiled: CompiledModel, base: Path) -> str:
    """``<script>.<function>-<UTC time>``: a new study each call, never an earlier run resumed."""
    stem = f"{default_study_name(compiled)}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    name, n = stem, 1
    while RunStorage.resolve(None, base, name).run_dir.exists():
        n += 1
        name = f"{stem}-{n}"
    return name


def _checked_trials(trials: Any) -> Any:
    needed = ("new_trial_ids", "new_trial_docs", "insert_trial_docs", "refresh", "trials")
    if all(hasattr(trials, attribute) for attribute in needed):
        return trials
    raise TypeError(
        f"trials must be hyperbrace.hyperas.Trials() or hyperopt.Trials(), got {trials!r}; e.g. "
        "`from hyperbrace.hyperas import Trials` and pass trials=Trials()"
    )


def _best_run(best: dict[str, Any], eval_space: bool) -> dict[str, Any]:
    misc = best["misc"]
    if eval_space and "real_vals" in misc:
        return dict(misc["real_vals"])
    return {name: values[0] for name, values in misc["vals"].items() if values}
