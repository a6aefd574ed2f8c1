"""``minimize``: run a search over a model function's ``{{...}}`` templates. ``evaluate``: run it with fixed values."""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna

from hyperbrace._arguments import check_evaluate_arguments, check_search_arguments, keyword_hints
from hyperbrace._context import TrialContext, active
from hyperbrace._warnings import user_stacklevel
from hyperbrace.budget import counted_trials, may_be_best
from hyperbrace.display import Progress, quiet_optuna_logs, space_table
from hyperbrace.journal import StorageFullError, disk_full_error, is_disk_full
from hyperbrace.metric import metric_of
from hyperbrace.preflight import check_data_returns
from hyperbrace.prune_on import check_prune_on
from hyperbrace.result import SPACE_ATTR, SearchResult
from hyperbrace.samplers import grid_space
from hyperbrace.search import BUDGET_ATTR, SearchPlan, arguments_from, call_data, call_with_data
from hyperbrace.storage import RunStorage, default_study_name
from hyperbrace.template import TemplateError, compile_model, space_entries
from hyperbrace.threads import one_process_threads
from hyperbrace.trial import TrialOutcome, TrialSettings
from hyperbrace.versions import open_version

__all__ = ["minimize", "maximize", "evaluate"]


@keyword_hints()
def minimize(
    model: Callable[..., Any],
    data: Callable[..., Any] | None = None,
    max_evals: int = 50,
    *,
    algo: Any = "auto",
    seed: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    directory: str | os.PathLike[str] = "hyperbrace-runs",
    timeout: float | None = None,
    n_jobs: int = 1,
    gpus: Sequence[int] | str | None = None,
    prune: Any = "asha",
    prune_on: str | tuple[str, str] = "auto",
    keep_models: int = 3,
    show_progress: bool = True,
    verbose: bool = False,
    data_args: Sequence[Any] | Mapping[str, Any] | None = None,
    retries: int = 1,
    load_options: Mapping[str, Any] | None = None,
    cluster: Any = None,
    reproducible: bool | int = False,
    more: int | None = None,
    enqueue: Sequence[Mapping[str, Any]] = (),
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
    tensorboard: bool = False,
    mlflow: bool | str = False,
    _metric: tuple[str, int] = ("loss", 1),
    on_space_change: str = "reuse",
) -> SearchResult:
    """Search the hyperparameters marked with ``{{...}}`` in ``model`` for the lowest loss.

    Args:
        model: the model function. It builds, trains and evaluates a model and returns the loss, or a dict
            ``{"loss": ..., "status": STATUS_OK, "model": model, ...}`` (extra keys are kept with the trial).
        data: a function called once per process; its value becomes the model's arguments (a tuple -> positional
            arguments, a dict -> keyword arguments, anything else -> one argument).
        max_evals: the total number of trials of the study. Running the same search again continues it up to
            this number, so a killed run resumes where it stopped.
        algo: "auto" (default: Optuna's GP or TPE, chosen per trial from the space, pruning, parallelism and
            trial count, see docs/search.md), "tpe", "random", "gp", "cmaes", "qmc", "grid" (finite spaces), or an
            Optuna sampler.
        seed: makes the suggestions repeatable.
        storage: a database URL ("sqlite:///...", "postgresql://...") instead of the run directory's journal file.
        study_name: the study's name (default: ``<script>.<function>``, or the function's name in a notebook).
        directory: where run directories live: ``<directory>/<study_name>/`` holds the study, models and logs.
        timeout: seconds after which no new trial starts.
        n_jobs: worker processes running trials at once on this machine.
        gpus: GPU ids (or "all"): one trial per GPU at a time.
        prune: stop bad trials early: "asha" (default: successive halving from a ninth of the epochs on, see
            docs/search.md), "median", "hyperband", None (train every trial to the end), or an Optuna pruner. Keras fits report
            each epoch by themselves; other code calls ``hyperbrace.report`` and ``hyperbrace.should_prune``.
        prune_on: the Keras or Lightning metric reported to the pruner after each epoch. "auto" (default): the
            validation metric that the model's returned loss is (``-acc`` with ``val_accuracy`` logged: it), learnt
            from the first completed trial (:mod:`hyperbrace.prune_on`). Or a name, whose direction follows from it
            ("val_accuracy" is maximized), or (name, "min" | "max") for other names: ("val_f1", "max").
        keep_models: how many of the best models to keep on disk.
        show_progress: show a progress bar and, at the end, a table of the best trials.
        verbose: also print each trial's output (it always goes to ``logs/trial-NNNNN.log``).
        data_args: arguments for ``data``.
        retries: how often a configuration whose process crashed (a segfault, out of memory) is run again. An
            interrupted one (Ctrl-C, a killed search) always runs again and counts once (docs/parallel.md).
        load_options: keyword options for loading the best model (e.g. ``{"custom_objects": {...}}`` for Keras).
        cluster: run the ``n_jobs`` workers on a cluster engine instead of this machine: ``"ray"``, ``"auto"``,
            ``"ray://host:port"``, a ``dask.distributed.Client``, an executor (submitit's ``AutoExecutor``, ...),
            or a launcher with per-trial resources (``hyperbrace.launchers.Ray(num_gpus=0.5)``). Workers reach the
            study through a gRPC proxy this process serves, and their models come home (docs/parallel.md).
        reproducible: the same ``seed`` gives the same configurations for any number of workers and any timing:
            trials are sampled in batches of 8 (or of the number given) from the earlier batches only. Costs
            wall-clock time (a batch waits for its slowest trial); off by default.
        more: run this many trials more than the study has now (instead of ``max_evals`` in all): a finished
            search continues with ``minimize(..., more=20)``.
        enqueue: known configurations to try first, by real values (as ``best_run`` shows them), e.g.
            ``[{"lr": 0.001, "units": 512}]``; inside a ``choice`` of objects, an option's index or source text.
            Names left out are sampled; a configuration already tried is not queued again. They count in
            ``max_evals``.
        callbacks: functions called as ``callback(study, trial)`` after each trial (Optuna's signature: the study
            and the finished ``FrozenTrial``), in the process that ran it; ``study.stop()`` stops that process.
        tensorboard: write each trial's TensorBoard event files to ``<run dir>/tensorboard/trial-NNNNN/`` (reported
            values, Keras epochs, the HPARAMS table); PyTorch code logs more with ``hyperbrace.summary_writer()``.
        mlflow: log one MLflow run per trial, nested under a run for the search: True (``$MLFLOW_TRACKING_URI``,
            else a file store in ``<run dir>/mlruns``) or a tracking URI.
        on_space_change: what a re-run does when the templates changed since the study's last run (it always says
            what changed, per name): "reuse" (default) goes on as a new version of the study, warm-started by the
            earlier trials that fit the new space (they are not run again and do not count towards
            ``max_evals``); "fresh" starts a new version from scratch; "continue" keeps one study (trials of both
            spaces mix); "error" stops. See :mod:`hyperbrace.versions`.

    Returns:
        A :class:`SearchResult`; it also unpacks as ``best_run, best_model``.

    Example::

        >>> import tempfile
        >>> from hyperbrace import minimize, uniform
        >>> def objective():
        ...     x = {{uniform(-2, 2)}}
        ...     return (x - 1) ** 2
        >>> result = minimize(objective, max_evals=20, seed=0, directory=tempfile.mkdtemp(), show_progress=False)
        >>> round(result.best_run["x"])
        1
    """
    check_search_arguments(
        model=model, data=data, max_evals=max_evals, algo=algo, seed=seed, storage=storage, study_name=study_name,
        directory=directory, timeout=timeout, n_jobs=n_jobs, gpus=gpus, prune=prune, keep_models=keep_models,
        show_progress=show_progress, verbose=verbose, data_args=data_args, retries=retries, load_options=load_options,
    )
    if more is not None and (not isinstance(more, int) or isinstance(more, bool) or more < 1):
        raise ValueError(f"more= takes how many trials to add to the study's, a positive integer; got {more!r}")
    if any(not callable(c) for c in callbacks):
        raise TypeError("callbacks= takes a list of functions called as callback(study, trial), e.g. "
                        "callbacks=[lambda study, trial: print(trial.number, trial.value)]")
    metric_name, sign = _metric
    if tensorboard:
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            raise ImportError("tensorboard=True writes with PyTorch's SummaryWriter: pip install torch tensorboard") from None
    check_prune_on(prune_on)  # a wrong prune_on fails now, not in the first trial
    compiled = compile_model(model)
    check_data_returns(compiled, data)  # data()'s returns against the model's parameters, before anything runs
    name = study_name or default_study_name(compiled)
    run_storage = RunStorage.resolve(storage, directory, name, retries)
    if algo == "grid":
        size = 1
        for values in grid_space(compiled.sites).values():
            size *= len(values)
        max_evals = min(max_evals, size)
    gpu_ids = _gpu_ids(gpus)
    n_jobs = max(n_jobs, 1)
    if cluster is not None and gpu_ids:
        raise ValueError("gpus= picks GPUs of this machine; on a cluster, declare each trial's GPUs on the launcher "
                         "instead: cluster=hyperbrace.launchers.Ray(num_gpus=1) (or Dask(client, resources={'GPU': 1}))")
    from hyperbrace.recycle import isolate_trials
    from hyperbrace.reproducible import batch_size

    batch = batch_size(reproducible)
    if batch and not isinstance(algo, str):
        raise ValueError(f"reproducible=True builds a fresh sampler for each trial, so algo= must be a name "
                         f"('tpe', 'random', 'gp', 'cmaes', 'qmc'), not the sampler instance {algo!r}")
    settings = TrialSettings(
        run_dir=run_storage.run_dir, keep_models=keep_models, echo_output=verbose and n_jobs == 1,
        prune_on=prune_on, pruning=prune is not None and prune is not False, metric=metric_name, sign=sign,
        tensorboard=bool(tensorboard),
    )
    plan = SearchPlan(
        model=compiled, data=data, data_args=data_args, storage=run_storage, study_name=name, algo=algo, seed=seed,
        prune=prune, settings=settings, max_evals=max_evals,
        deadline=None if timeout is None else time.time() + timeout, n_jobs=n_jobs if not gpu_ids else len(gpu_ids),
        reproducible=batch, callbacks=tuple(callbacks),
    )
    with quiet_optuna_logs(unless=verbose):
        # The study's version for this space: a changed space goes on as a new version (hyperbrace.versions).
        plan, study = open_version(plan, on_space_change)
    _check_same_metric(study, metric_name, sign)
    if more is not None:
        max_evals = plan.max_evals = counted_trials(study) + more
    if enqueue:
        from hyperbrace.seeding import enqueue_configurations

        enqueue_configurations(study, compiled.sites, enqueue)
    if mlflow:
        from hyperbrace.integrations import tracking

        # On the version's plan: open_version returns a plan with its own copy of the trial settings.
        plan.settings.mlflow = tracking.start_search(tracking.mlflow_settings(mlflow, run_storage.run_dir), study)
    # Workers that joined earlier (hyperbrace worker) take a raised budget from here when theirs runs out.
    study._storage.set_study_system_attr(study._study_id, BUDGET_ATTR, max_evals)
    study.set_user_attr(SPACE_ATTR, space_entries(compiled.sites))
    if show_progress:
        print(space_table(space_entries(compiled.sites)), file=sys.stderr)
    from hyperbrace.executor import publish_plan

    # So that `hyperbrace worker --storage URL|RUN_DIR --study NAME` can join, from anywhere (a database) or from
    # another terminal (the journal). Only a database search warns when its plan cannot be published.
    publish_plan(study, plan, warn=run_storage.url is not None)
    completed = [t.value for t in study.get_trials(deepcopy=False) if may_be_best(t)]
    progress = Progress(
        total=max_evals, done=counted_trials(study), best=min(completed) if completed else None,
        enabled=show_progress, label=study.study_name, metric=metric_of(study),
    )
    try:
        if cluster is not None:
            from hyperbrace.launchers import resolve
            from hyperbrace.launchers._chief import run_on_cluster

            run_on_cluster(plan, resolve(cluster), progress)
        elif plan.n_jobs > 1 or gpu_ids or isolate_trials(verbose):
            # isolate_trials: TensorFlow leaks ~3 MB a trial in one process, so its trials run in one worker that is
            # replaced when its memory grew past a bound (hyperbrace/recycle.py).
            from hyperbrace.executor import run_workers

            run_workers(plan, progress, gpus=gpu_ids)
        else:
            def on_outcome(outcome: TrialOutcome) -> None:
                progress.advance(counted_trials(study), outcome.loss if outcome.state.name == "COMPLETE" else None)

            with one_process_threads():  # the math libraries get the idle cores, not every core (threads.py)
                plan.run_trials(on_outcome=on_outcome, study=study)
    except KeyboardInterrupt:
        progress.close()
        print(
            f"\nInterrupted. Every finished trial is saved in {run_storage.description}; run the same search again "
            "to continue it (the interrupted trial runs again).",
            file=sys.stderr,
        )
        raise
    except OSError as exc:
        if is_disk_full(exc) and not isinstance(exc, StorageFullError):
            raise disk_full_error(run_storage.run_dir, exc) from exc
        raise
    finally:
        progress.close()
        if plan.settings.mlflow:
            from hyperbrace.integrations import tracking

            tracking.end_search(plan.settings.mlflow, study, failed=sys.exc_info()[0] is not None)
    result = SearchResult(study, run_storage.run_dir, dict(load_options or {}))
    if show_progress:
        print(result.summary())
    return result


@keyword_hints(minimize)
def maximize(
    model: Callable[..., Any],
    data: Callable[..., Any] | None = None,
    max_evals: int = 50,
    *,
    metric: str = "score",
    **options: Any,
) -> SearchResult:
    """Search for the highest value of a metric: :func:`minimize`'s twin, with the same options.

    The model returns the metric (a number), or a dict with it under ``metric``'s name (``{"accuracy": acc,
    "model": model}``). Progress, tables, reports and exports show it as returned; the Optuna study minimizes
    its negation (so pruners and samplers work unchanged), and ``hyperbrace.report(value)`` takes intermediate
    values of the metric as computed, higher is better.

    >>> import tempfile
    >>> from hyperbrace import maximize, uniform
    >>> def objective():
    ...     x = {{uniform(-2, 2)}}
    ...     return {"accuracy": 1 - (x - 1) ** 2}
    >>> result = maximize(objective, max_evals=20, seed=0, metric="accuracy", directory=tempfile.mkdtemp(),
    ...                   show_progress=False)
    >>> round(result.best_run["x"]), result.best_value > 0.9, result.best_value == -result.best_loss
    (1, True, True)
    """
    if not isinstance(metric, str) or not metric or metric in ("status", "model"):
        raise ValueError(f"metric={metric!r}: give the name the model returns the metric under, e.g. 'accuracy'")
    return minimize(model, data, max_evals, _metric=(metric, -1), **options)


def _check_same_metric(study: optuna.Study, name: str, sign: int) -> None:
    """A study keeps what it optimizes: maximizing a minimized study (or the reverse) would mix the two."""
    from hyperbrace.metric import METRIC_ATTR, set_metric

    recorded = study.user_attrs.get(METRIC_ATTR)
    wanted = {"name": name, "direction": "maximize" if sign == -1 else "minimize"}
    if recorded is None and sign == 1 and name == "loss":
        return  # the default: nothing to record
    if recorded is None and study.get_trials(deepcopy=False) and sign == -1:
        raise ValueError(f"study {study.study_name!r} holds trials of a minimize() search; maximize {name!r} in a "
                         "new study (pass study_name=)")
    if recorded is not None and recorded != wanted:
        raise ValueError(f"study {study.study_name!r} was made to {recorded['direction']} {recorded['name']!r}; "
                         f"to {wanted['direction']} {name!r}, pass another study_name=")
    set_metric(study, name, maximize=sign == -1)


def _gpu_ids(gpus: Sequence[int] | str | None) -> list[str]:
    if gpus is None:
        return []
    if gpus == "all":
        from hyperbrace.executor import visible_gpus

        found = visible_gpus()
        if not found:  # the same script runs on a laptop and on a GPU server: warn, and run on the CPU
            warnings.warn("gpus='all' but this machine shows no GPU (CUDA_VISIBLE_DEVICES, nvidia-smi); "
                          "running on the CPU with n_jobs workers", stacklevel=user_stacklevel())
        return found
    if isinstance(gpus, str):
        gpus = [part.strip() for part in gpus.split(",") if part.strip()]  # "0,1", as CUDA_VISIBLE_DEVICES writes it
    elif isinstance(gpus, int):
        gpus = [gpus]
    return [str(g) for g in gpus]


@keyword_hints()
def evaluate(
    model: Callable[..., Any],
    params: Mapping[str, Any],
    data: Callable[..., Any] | None = None,
    data_args: Sequence[Any] | Mapping[str, Any] | None = None,
) -> Any:
    """Run the model function once with fixed template values (e.g. to retrain the best configuration).

    ``params`` are the engine's values, as in ``result.best_params`` (for an object inside ``choice``, its index).

    >>> def objective():
    ...     x = {{uniform(0, 1)}}
    ...     return x * 2
    >>> evaluate(objective, {"x": 0.25})
    0.5
    """
    check_evaluate_arguments(model, params, data, data_args)
    compiled = compile_model(model)
    context = TrialContext(optuna.trial.FixedTrial(dict(params)), number=-1)
    context.pruning_enabled = False  # one fixed run: nothing to compare it with
    args, kwargs = arguments_from(call_data(data, data_args))
    try:
        with active(context):
            return call_with_data(compiled, args, kwargs)
    except TemplateError as exc:
        if "not found" not in exc.message:
            raise
        # A template reached a name that params lacks: say which names were given.
        raise TemplateError(
            f"{exc.message}; evaluate() was given values for {sorted(params)}",
            filename=exc.filename, lineno=exc.lineno, text=exc.text, function=exc.function,
        ) from None


