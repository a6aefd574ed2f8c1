"""Logging trials to the tools people already use: TensorBoard and MLflow (opt-in, with their own libraries).

``minimize(..., tensorboard=True)``
    Each trial writes TensorBoard event files to ``<run dir>/tensorboard/trial-NNNNN/`` with PyTorch's
    ``SummaryWriter`` (the ``tensorboard`` package's format): the values the trial reported
    (``hyperbrace.report``, or each Keras epoch's ``val_loss``), every Keras ``fit`` epoch's logs (``epoch/loss``,
    ``epoch/val_accuracy``, ...), and the trial's hyperparameters with its final value in TensorBoard's HPARAMS
    table. PyTorch code gets the trial's writer from :func:`summary_writer` to log anything else.
    ``tensorboard --logdir <run dir>/tensorboard`` shows them all.

``minimize(..., mlflow=True)`` (or a tracking URI)
    One MLflow run per trial (its hyperparameters' real values as params, its final value and its reported values
    as metrics, its state as a tag and as the run's status), nested under one parent run for the search, in the
    experiment named after the study. ``True`` logs to ``$MLFLOW_TRACKING_URI`` when set, else to a file store in
    ``<run dir>/mlruns`` (MLflow keeps its file store in maintenance mode; ``mlflow="sqlite:///mlflow.db"`` uses
    its database store instead).

A failure to log never fails a trial: it is reported once as a warning and the search goes on.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hyperbrace._context import TrialContext, current_trial

__all__ = ["summary_writer", "mlflow_settings", "start_search", "end_search", "trackers", "TrackingWarning"]

_WRITER = "tensorboard.writer"
_KERAS_EPOCH = "tensorboard.keras_epoch"
_STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}


class TrackingWarning(UserWarning):
    """TensorBoard or MLflow logging failed; the search goes on without it."""


def summary_writer() -> Any:
    """The running trial's TensorBoard ``SummaryWriter`` (``minimize(..., tensorboard=True)``), else ``None``.

    >>> summary_writer() is None  # outside a search, or without tensorboard=True
    True
    """
    context = current_trial()
    return None if context is None else context.extras.get(_WRITER)


def _plain(value: Any) -> Any:
    """A hyperparameter value as TensorBoard's HPARAMS table and MLflow's params take it."""
    if isinstance(value, bool) or isinstance(value, (int, float, str)):
        return value
    return str(value)


@contextlib.contextmanager
def _file_store_allowed(uri: str) -> Any:
    """MLflow 3 refuses its file store unless MLFLOW_ALLOW_FILE_STORE is set; allow it for this call only."""
    if not uri.startswith("file:") or "MLFLOW_ALLOW_FILE_STORE" in os.environ:
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def mlflow_settings(option: Any, run_dir: Path) -> dict[str, str] | None:
    """``minimize(mlflow=...)`` as a tracking URI (None when off)."""
    if option is None or option is False:
        return None
    if option is True:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or (Path(run_dir).resolve() / "mlruns").as_uri()
    elif isinstance(option, (str, os.PathLike)):
        uri = os.fspath(option)
        if "://" not in uri and not uri.startswith("file:"):
            uri = Path(uri).resolve().as_uri()  # a directory: a file store there
    else:
        raise TypeError(f"mlflow={option!r}: give True, or a tracking URI such as 'sqlite:///mlflow.db'")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ImportError("mlflow=... needs MLflow: pip install mlflow-skinny (or mlflow)") from None
    return {"uri": uri}


def start_search(settings: dict[str, str], study: optuna.Study) -> dict[str, str]:
    """Open (or reuse) the study's experiment and start the search's parent run; returns the settings for trials."""
    uri = settings["uri"]
    with _file_store_allowed(uri):
        client = _client(uri)
        experiment = client.get_experiment_by_name(study.study_name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(study.study_name)
        parent = client.create_run(experiment_id, run_name=f"search {time.strftime('%Y-%m-%d %H:%M:%S')}",
                                   tags={"hyperbrace.study": study.study_name})
    return {"uri": uri, "experiment_id": experiment_id, "parent": parent.info.run_id}


def end_search(settings: dict[str, str], study: optuna.Study, failed: bool = False) -> None:
    """Log the best trial on the parent run and end it."""
    from mlflow.entities import Metric, Param

    from hyperbrace.metric import metric_of

    metric = metric_of(study)
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    with _file_store_allowed(settings["uri"]):
        client = _client(settings["uri"])
        if done:
            best = min(done, key=lambda t: t.value)
            values = best.user_attrs.get("hb.values", best.params)
            now = int(time.time() * 1000)
            client.log_batch(settings["parent"], metrics=[Metric(f"best_{metric.name}", metric.show(best.value), now, 0)],
                             params=[Param(f"best.{k}", str(_plain(v))[:6000]) for k, v in values.items()])
            client.set_tag(settings["parent"], "hyperbrace.best_trial", str(best.number))
        client.set_terminated(settings["parent"], "FAILED" if failed else "FINISHED")


class _TensorBoard:
    def __init__(self, run_dir: Path) -> None:
        self.root = Path(run_dir) / "tensorboard"

    def start(self, context: TrialContext) -> None:
        from torch.utils.tensorboard import SummaryWriter

        context.extras[_WRITER] = SummaryWriter(log_dir=str(self.root / f"trial-{context.number:05d}"))
        context.extras[_KERAS_EPOCH] = 0
        if "keras" in sys.modules:
            _wrap_keras_fit()

    def finish(self, context: TrialContext, frozen: optuna.trial.FrozenTrial) -> None:
        from hyperbrace.metric import metric_of

        writer = context.extras.pop(_WRITER, None)
        if writer is None:
            return
        try:
            metric = metric_of(context.trial.study)
            for step, value in sorted(frozen.intermediate_values.items()):
                writer.add_scalar(f"reported/{metric.name}", metric.show(value), step)
            values = frozen.user_attrs.get("hb.values", frozen.params)
            final = metric.show(frozen.value) if frozen.value is not None else math.nan
            writer.add_hparams({k: _plain(v) for k, v in values.items()}, {f"hparam/{metric.name}": final},
                               run_name=".")
        finally:
            writer.close()


class _Mlflow:
    def __init__(self, settings: dict[str, str]) -> None:
        self.settings = settings
        self.run_id: str | None = None

    def start(self, context: TrialContext) -> None:
        with _file_store_allowed(self.settings["uri"]):
            run = _client(self.settings["uri"]).create_run(
                self.settings["experiment_id"], run_name=f"trial-{context.number:05d}",
                tags={"mlflow.parentRunId": self.settings["parent"], "hyperbrace.trial": str(context.number)},
            )
        self.run_id = run.info.run_id

    def finish(self, context: TrialContext, frozen: optuna.trial.FrozenTrial) -> None:
        from mlflow.entities import Metric, Param

        from hyperbrace.metric import metric_of

        if self.run_id is None:
            return
        metric = metric_of(context.trial.study)
        now = int(time.time() * 1000)
        values = frozen.user_attrs.get("hb.values", frozen.params)
        params = [Param(k, str(_plain(v))[:6000]) for k, v in values.items()]
        metrics = [Metric(f"reported_{metric.name}", metric.show(v), now, step)
                   for step, v in sorted(frozen.intermediate_values.items()) if math.isfinite(v)]
        if frozen.value is not None and frozen.state == TrialState.COMPLETE:
            metrics.append(Metric(metric.name, metric.show(frozen.value), now, 0))
        with _file_store_allowed(self.settings["uri"]):
            client = _client(self.settings["uri"])
            client.log_batch(self.run_id, metrics=metrics, params=params)
            client.set_tag(self.run_id, "hyperbrace.state", frozen.state.name)
            error = frozen.user_attrs.get("hb.error")
            if error:
                client.set_tag(self.run_id, "hyperbrace.error", str(error)[-4000:])
            client.set_terminated(self.run_id, _STATUS.get(frozen.state, "FAILED"))


def trackers(run_dir: Path, tensorboard: bool, mlflow: dict[str, str] | None) -> list[Any]:
    """The trackers a trial runs with (none unless the search asked for them)."""
    found: list[Any] = []
    if tensorboard:
        found.append(_TensorBoard(run_dir))
    if mlflow:
        found.append(_Mlflow(mlflow))
    return found


def safely(context: TrialContext, action: str, call: Any, *args: Any) -> None:
    """Run a tracker's step; a failure becomes one warning (per kind of failure), never a failed trial."""
    try:
        call(*args)
    except Exception as exc:  # noqa: BLE001  (logging must not fail the trial)
        context.warn_once(f"{action}:{type(exc).__name__}",
                          f"{action} failed, the search goes on without it: {type(exc).__name__}: {exc}",
                          TrackingWarning)


# -- Keras: every epoch's logs into the trial's writer ---------------------------------------------------------------
def _wrap_keras_fit() -> None:
    import functools
    import inspect

    import keras

    if getattr(keras.Model.fit, "__hyperbrace_tensorboard__", False):
        return
    original = keras.Model.fit
    signature = inspect.signature(original)

    class EpochLogs(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self, context: TrialContext) -> None:
            super().__init__()
            self.context = context

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            writer = self.context.extras.get(_WRITER)
            if writer is None:
                return
            step = self.context.extras.get(_KERAS_EPOCH, 0)
            for name, value in (logs or {}).items():
                with contextlib.suppress(TypeError, ValueError):
                    writer.add_scalar(f"epoch/{name}", float(value), step)
            self.context.extras[_KERAS_EPOCH] = step + 1

    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        context = current_trial()
        if context is None or context.extras.get(_WRITER) is None:
            return original(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        given = bound.arguments.get("callbacks")
        if isinstance(given, keras.callbacks.CallbackList):
            return original(*bound.args, **bound.kwargs)  # a prepared list: left as it is
        bound.arguments["callbacks"] = [*(given or []), EpochLogs(context)]
        return original(*bound.args, **bound.kwargs)

    fit.__hyperbrace_tensorboard__ = True  # type: ignore[attr-defined]
    keras.Model.fit = fit
