"""One trial: call the model with the data, read what it returns, record the outcome. Failures are data.

This is the one place where a trial runs, whichever process runs it (the search loop in this process, or a
worker). A trial ends in one of three states:

* COMPLETE: the model returned a finite loss (a number, or a dict with ``"loss"``);
* PRUNED: the pruner stopped it (``hyperbrace.Pruned`` / ``optuna.TrialPruned``), with its last reported value;
* FAIL: it raised, returned ``status: "fail"``, a NaN/inf loss or something that is not a loss. The traceback is
  stored with the trial (``hb.error``) and in its log file, and the search goes on.

``SystemExit`` (a library calling ``sys.exit()``) and other exceptions that are not ``Exception`` subclasses fail
the trial the same way, with their traceback: they never end a search silently.

Two things are not trial failures but stop the search: a template mistake (:class:`TemplateError`), which will
fail every trial alike, and Ctrl-C. In both the running trial is closed first, so nothing completed is lost; an
interrupted trial's configuration is queued to run again (:mod:`hyperbrace.recovery`).

While a trial runs, ``sys.stdout`` and ``sys.stderr`` write to its log; afterwards they are the streams they were,
and anything the trial bound to them (a logging handler) keeps working.
"""

from __future__ import annotations

import faulthandler
import io
import json
import math
import numbers
import os
import socket
import sys
import threading
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from hyperbrace import integrations, model_files, prune_on
from hyperbrace._context import TrialContext, active
from hyperbrace.recovery import OWNER_ATTR, release, requeue  # noqa: F401  (requeue: storage.py's import)
from hyperbrace.metric import as_minimized
from hyperbrace.budget import is_reused
from hyperbrace.template import CompiledModel, TemplateError, uncompiled_template_error

__all__ = ["STATUS_OK", "STATUS_FAIL", "TrialOutcome", "TrialSettings", "execute"]

STATUS_OK = "ok"  #: the ``status`` of a trial that worked (hyperopt's value, so Hyperas code keeps working)
STATUS_FAIL = "fail"  #: the ``status`` a model returns to mark its trial failed

_ERROR_CHARS = 4000  # a stored traceback's length cap; the whole text is in the trial's log


@dataclass
class TrialSettings:
    """How trials of one search are run; picklable, so workers get the same settings."""

    run_dir: Path
    keep_models: int = 3
    echo_output: bool = False  #: also print the trial's output (it always goes to its log file)
    #: the metric pruned on: "auto" (hyperbrace.prune_on), a name, or (name, "min" | "max")
    prune_on: str | tuple[str, str] = "auto"
    pruning: bool = False
    #: An Optuna artifact store the best models are also uploaded to (workers whose run directory the chief cannot
    #: read; see :mod:`hyperbrace.artifacts`), or None.
    artifacts: Any = None
    metric: str = "loss"  #: what the model returns: "loss" (minimized), or the name of the metric maximize() raises
    sign: int = 1  #: -1 when the metric is maximized (the study stores it negated)
    tensorboard: bool = False  #: write TensorBoard event files per trial (hyperbrace.integrations.tracking)
    mlflow: dict[str, str] | None = None  #: the MLflow tracking URI, experiment and parent run, when logging there
    #: the study version's folder in the run directory ("v2"...; "" for version 1), see hyperbrace.versions
    version_dir: str = ""

    @property
    def models_dir(self) -> Path:
        return self.run_dir / self.version_dir / "models"

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / self.version_dir / "logs"


@dataclass
class TrialOutcome:
    """How one trial ended, as the search loop needs it."""

    number: int
    state: TrialState
    loss: float | None
    values: dict[str, Any]
    error: str | None = None
    error_key: str | None = None  #: type and message, to tell "the same error again" apart
    exception: BaseException | None = field(default=None, repr=False)
    model_path: str | None = None
    duration: float = 0.0


class ResultError(TypeError):
    """The model function returned something that is not a loss."""


#: Appended to :func:`worker_id` by a worker a cluster engine started: the chief's name for that launch, so the
#: chief can fail the running trial of a launch the engine reports lost (a node gone, a job cancelled).
_worker_tag = ""


def set_worker_tag(tag: str) -> None:
    """Name this process's launch in its trials' ``hb.worker`` (see :data:`_worker_tag`)."""
    global _worker_tag
    _worker_tag = tag


def worker_id() -> str:
    """``host:pid:start[:launch]``: identifies this process, so a dead worker's running trials can be found.

    >>> worker_id().count(":")
    2
    """
    base = f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}"
    return f"{base}:{_worker_tag}" if _worker_tag else base


def _process_start(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return "0"


def is_worker_alive(worker: str) -> bool | None:
    """Whether the process ``worker`` names still runs; ``None`` when it ran on another host."""
    host, pid, start = (worker.split(":") + ["", "", ""])[:3]
    if host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return _process_start(int(pid)) == start


_RETURN_EXAMPLE = "{'loss': -accuracy, 'status': STATUS_OK, 'model': model}"
_STATUSES = (STATUS_OK, STATUS_FAIL)


def read_result(result: Any, function: str) -> tuple[float, str, Any, dict[str, Any]]:
    """Split what the model returned into (loss, status, model, extra keys).

    >>> read_result({"loss": 0.5, "status": "ok", "model": None, "accuracy": 0.9}, "create_model")
    (0.5, 'ok', None, {'accuracy': 0.9})
    >>> read_result({"loss": 0.5, "status": "success"}, "create_model")
    Traceback (most recent call last):
    ...
    hyperbrace.trial.ResultError: create_model() returned 'status': 'success', which is not a status; write 'status': STATUS_OK (the string 'ok') for a trial that worked, or 'status': STATUS_FAIL ('fail') to mark it failed
    """
    if result is None:
        raise ResultError(
            f"{function}() returned None (is its `return` missing?); return the loss (a number) or a dict such as "
            f"{_RETURN_EXAMPLE}"
        )
    if isinstance(result, dict):
        if "loss" not in result and result.get("status", STATUS_OK) != STATUS_FAIL:
            raise ResultError(
                f"{function}() returned a dict without 'loss' (keys: {sorted(result)}); add the value to minimize, "
                f"e.g. {_RETURN_EXAMPLE}"
            )
        extras = {k: v for k, v in result.items() if k not in ("loss", "status", "model")}
        loss = result.get("loss", math.nan)
        status = result.get("status", STATUS_OK)
        model = result.get("model")
    else:
        loss, status, model, extras = result, STATUS_OK, None, {}
    if not isinstance(status, str) or status not in _STATUSES:
        raise ResultError(
            f"{function}() returned 'status': {status!r}, which is not a status; write 'status': STATUS_OK (the "
            "string 'ok') for a trial that worked, or 'status': STATUS_FAIL ('fail') to mark it failed"
        )
    loss = _as_number(loss, result, function)
    return loss, status, model, extras


def _as_number(loss: Any, result: Any, function: str) -> float:
    """The loss as a float: a Python number, or a one-element array or tensor (NumPy, PyTorch, TensorFlow, JAX)."""
    if not isinstance(loss, numbers.Real) and callable(getattr(loss, "numpy", None)) and not hasattr(loss, "item"):
        loss = loss.numpy()  # a TensorFlow tensor
    shape = getattr(loss, "shape", None)
    if shape is not None and not isinstance(loss, numbers.Real):
        size = math.prod(tuple(shape))
        if size != 1:
            kind = f"{type(loss).__module__.split('.')[0]}.{type(loss).__name__}"
            raise ResultError(
                f"{function}() returned a loss that is an array of shape {tuple(shape)} ({kind}), not one number; "
                "reduce it to the value to minimize, e.g. `float(loss.mean())`, or pick one, e.g. "
                "`history.history['val_loss'][-1]`"
            )
        if callable(getattr(loss, "item", None)):
            loss = loss.item()  # a 0-d or one-element array or tensor
    elif callable(getattr(loss, "item", None)) and not isinstance(loss, numbers.Real):
        loss = loss.item()
    if isinstance(loss, bool) or not isinstance(loss, numbers.Real):
        raise ResultError(
            f"{function}() returned {result!r:.200}; return the loss (a number) or a dict such as {_RETURN_EXAMPLE} "
            "(a one-element tensor or array: `loss.item()`)"
        )
    return float(loss)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


class _Tee(io.TextIOBase):
    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def isatty(self) -> bool:
        return False


class _TrialStream(io.TextIOBase):
    """What ``sys.stdout``/``sys.stderr`` are while a trial runs: its log (and the terminal with ``verbose``).

    When the trial ends the stream falls back to the one it replaced, and stays usable: whatever bound itself to
    it during the trial (a ``logging.basicConfig()`` inside the trial, e.g. from Keras' first warning through
    absl) writes where it would have written without hyperbrace, never to a closed file.
    """

    def __init__(self, target: Any, fallback: Any) -> None:
        self._target = target
        self._fallback = fallback

    def detach_trial(self) -> None:
        self._target = self._fallback

    def write(self, text: str) -> int:
        self._target.write(text)
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def isatty(self) -> bool:
        return self._target is self._fallback and bool(getattr(self._fallback, "isatty", lambda: False)())

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._target.fileno()  # native code writes where Python code does (io.UnsupportedOperation if none)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._target, "errors", None)

    def __getattr__(self, name: str) -> Any:  # e.g. .buffer for code that writes bytes
        return getattr(self._target, name)


def user_frame(
    tb: traceback.StackSummary | list[traceback.FrameSummary],
    filename: str,
    default: traceback.FrameSummary | None = None,
) -> traceback.FrameSummary | None:
    """The innermost frame in the user's model file (else the innermost outside hyperbrace and site-packages,
    else ``default``: for an error hyperbrace raises about the model, such as a wrong return value)."""
    frames = list(tb)
    for frame in reversed(frames):
        if frame.filename == filename:
            return frame
    here = str(Path(__file__).parent)
    for frame in reversed(frames):
        if not frame.filename.startswith(here) and "site-packages" not in frame.filename:
            return frame
    if default is not None:
        return default
    return frames[-1] if frames else None


def execute(
    study: optuna.Study,
    trial: optuna.Trial,
    model: CompiledModel,
    call: Callable[[CompiledModel], Any],
    settings: TrialSettings,
) -> TrialOutcome:
    """Run ``trial``: ``call(model)`` calls the model with the data. Returns the outcome; the trial is told."""
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    if trial.user_attrs.get(OWNER_ATTR) != worker_id():  # claim() records it with the trial; others need it too
        trial.set_user_attr(OWNER_ATTR, worker_id())
    context = TrialContext(trial)
    context.pruning_enabled = settings.pruning
    context.extras["prune_on"] = settings.prune_on
    context.extras["sign"] = settings.sign  # hyperbrace.report() takes a maximized metric as the model computes it
    hooks = integrations.active()
    log_path = settings.logs_dir / f"trial-{trial.number:05d}.log"
    # Line-buffered: if the process dies (killed, out of memory, a crash), the log holds its output up to then.
    with open(log_path, "w", encoding="utf-8", errors="replace", buffering=1) as log:
        out = _TrialStream(_Tee(log, sys.stdout) if settings.echo_output else log, sys.stdout)
        err = _TrialStream(_Tee(log, sys.stderr) if settings.echo_output else log, sys.stderr)
        try:
            with active(context), redirect_stdout(out), redirect_stderr(err), _crash_dumps_to(log):
                for hook in hooks:
                    hook.before_trial(context)
                trackers = _start_tracking(settings, context)
                try:
                    return _run_and_record(study, trial, model, call, settings, context, log)
                finally:
                    _finish_tracking(trackers, study, trial, context)
                    # After the model is saved: e.g. Keras' clear_session must not run before the save.
                    for hook in hooks:
                        hook.after_trial(context)
        finally:
            out.detach_trial()
            err.detach_trial()


class _crash_dumps_to:
    """A crash during the trial (a segfault in native code, an abort) dumps every thread's stack into its log, with
    faulthandler: the trial's log then says why the process died, and the next run's reaper counts the crash
    against ``retries`` (a configuration that crashes the process is not run again forever). Put back as found."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.enabled = faulthandler.is_enabled()
        # Engines that run trials in threads (Dask, Ray) share the process: only the main thread switches it.
        self.active = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> None:
        if self.active:
            try:
                faulthandler.enable(file=self.log, all_threads=True)
            except (ValueError, OSError, io.UnsupportedOperation):  # a log without a file descriptor
                self.active = False

    def __exit__(self, *exc: Any) -> None:
        if not self.active:
            return
        if self.enabled and sys.__stderr__ is not None:
            faulthandler.enable(file=sys.__stderr__, all_threads=True)
        else:
            faulthandler.disable()


def _start_tracking(settings: TrialSettings, context: TrialContext) -> list[Any]:
    """TensorBoard / MLflow logging for this trial, when the search asked for it."""
    if not settings.tensorboard and not settings.mlflow:
        return []
    from hyperbrace.integrations import tracking

    found = tracking.trackers(settings.run_dir, settings.tensorboard, settings.mlflow)
    for tracker in found:
        tracking.safely(context, f"{type(tracker).__name__.strip('_')} logging", tracker.start, context)
    return found


def _finish_tracking(trackers: list[Any], study: optuna.Study, trial: optuna.Trial, context: TrialContext) -> None:
    if not trackers:
        return
    from hyperbrace.integrations import tracking

    frozen = study._storage.get_trial(trial._trial_id)
    for tracker in trackers:
        tracking.safely(context, f"{type(tracker).__name__.strip('_')} logging", tracker.finish, context, frozen)


def _run_and_record(
    study: optuna.Study,
    trial: optuna.Trial,
    model: CompiledModel,
    call: Callable[[CompiledModel], Any],
    settings: TrialSettings,
    context: TrialContext,
    log: Any,
) -> TrialOutcome:
    started = time.perf_counter()
    try:
        loss, status, model_obj, extras = read_result(as_minimized(call(model), settings.metric, settings.sign),
                                                      model.name)
    except optuna.TrialPruned:
        log.write(f"\n[hyperbrace] pruned at step {context.last_step} (value {context.last_value})\n")
        return _finish(study, trial, context, TrialState.PRUNED, context.last_value, started)
    except TemplateError as exc:
        _tell_failed(study, trial, context, exc, log, started)
        raise
    except KeyboardInterrupt as exc:
        # Ctrl-C, or SIGTERM / the search's end in a worker: not the configuration's fault, so it runs again.
        reason = f"interrupted ({exc})" if str(exc).startswith("signal") else "interrupted (Ctrl-C)"
        log.write(f"\n[hyperbrace] {reason}; the configuration runs again when the search is resumed\n")
        trial.set_user_attr("hb.values", {k: _jsonable(v) for k, v in context.values.items()})
        release(study, trial._trial_id, reason)
        raise
    except BaseException as exc:
        template_error = uncompiled_template_error(exc)  # `unhashable type: 'set'` from a template not compiled
        if template_error is not None:
            _tell_failed(study, trial, context, template_error, log, started)
            raise template_error from exc
        # An Exception, or SystemExit (a library calling sys.exit()) and other BaseExceptions: the trial failed,
        # its traceback is recorded, and the search goes on. Where no frame of the user's code raised (the model
        # returned None), point at its `return` or `def` line.
        return _tell_failed(study, trial, context, exc, log, started, filename=model.filename, default=_blame(model, context))
    for key, value in extras.items():
        trial.set_user_attr(key, _jsonable(value))
    if status != STATUS_OK or not math.isfinite(loss):
        reason = f"status {status!r}" if status != STATUS_OK else _bad_loss(model, context, loss)
        trial.set_user_attr("hb.error", f"failed: {reason}")
        log.write(f"\n[hyperbrace] trial failed: {reason}\n")
        return _finish(
            study, trial, context, TrialState.FAIL, None, started, error=f"failed: {reason}", error_key=reason
        )
    # prune_on="auto": the first completed trial tells which logged metric its loss is (reported before the tell,
    # while the trial still takes intermediate values); a warning about it points at the model's return line.
    frame = _blame(model, context)
    prune_on.settle(context, loss, where=(frame.filename, frame.lineno or 0))
    # The model is saved (if among the best) and then dropped: models are never kept across trials.
    model_path = _save_if_top(study, trial, model_obj, loss, settings) if model_obj is not None else None
    return _finish(study, trial, context, TrialState.COMPLETE, loss, started, model_path=model_path)


def _blame(model: CompiledModel, context: TrialContext) -> traceback.FrameSummary:
    """The line of the user's model that an error about its return value is about: the `return` that ended it
    (else the `def`)."""
    line = context.extras.get("hb.return_line")
    if line is None and len(model.returns) == 1:
        line = model.returns[0][0]
    text = dict(model.returns).get(line)
    if line is None or text is None:
        return traceback.FrameSummary(model.filename, model.lineno, model.name)
    return traceback.FrameSummary(model.filename, line, model.name, line=text)


def _bad_loss(model: CompiledModel, context: TrialContext, loss: float) -> str:
    """Why a non-finite loss failed its trial, naming the model's return line and what to write instead."""
    frame = _blame(model, context)
    text = f": `{frame.line if len(frame.line) <= 80 else frame.line[:77] + '...'}`" if frame.line else ""
    return (
        f'the loss is {loss} (File "{frame.filename}", line {frame.lineno}{text}). '
        "The trial is recorded as failed and the search goes on; if training diverged, "
        "narrow the learning-rate range or clip gradients, and to fail a trial on purpose return "
        "{'loss': ..., 'status': STATUS_FAIL}"
    )


def _finish(
    study: optuna.Study,
    trial: optuna.Trial,
    context: TrialContext,
    state: TrialState,
    value: float | None,
    started: float,
    **fields: Any,
) -> TrialOutcome:
    duration = time.perf_counter() - started
    trial.set_user_attr("hb.values", {k: _jsonable(v) for k, v in context.values.items()})
    if context.steps_reported:
        trial.set_user_attr("hb.steps", context.steps_reported)
    if state == TrialState.COMPLETE:
        study.tell(trial, value)
    elif state == TrialState.PRUNED:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)
    return TrialOutcome(trial.number, state, value, dict(context.values), duration=duration, **fields)


def _tell_failed(
    study: optuna.Study,
    trial: optuna.Trial,
    context: TrialContext,
    error: BaseException | str,
    log: Any,
    started: float,
    filename: str = "",
    default: traceback.FrameSummary | None = None,
) -> TrialOutcome:
    if isinstance(error, BaseException):
        frames = traceback.extract_tb(error.__traceback__)
        frame = user_frame(frames, filename, default)
        text = "".join(traceback.format_exception(error))
        where = f'File "{frame.filename}", line {frame.lineno}, in {frame.name}\n    {frame.line}\n' if frame else ""
        summary = f"{where}{type(error).__name__}: {error}"
        key = f"{type(error).__name__}: {error}"
        if isinstance(error, SystemExit):
            summary += " (the trial called sys.exit(); it failed, and the search goes on)"
    else:
        text = summary = key = error
    log.write(f"\n[hyperbrace] trial failed:\n{text}\n")
    trial.set_user_attr("hb.error", summary[-_ERROR_CHARS:])
    outcome = _finish(
        study, trial, context, TrialState.FAIL, None, started, error=summary, error_key=key,
        exception=error if isinstance(error, BaseException) else None,
    )
    return outcome


def _save_if_top(
    study: optuna.Study, trial: optuna.Trial, model_obj: Any, loss: float, settings: TrialSettings
) -> str | None:
    """Save the model if its loss is among the ``keep_models`` best; drop files that fell out of the top."""
    if settings.keep_models <= 0:
        return None
    # Reused trials (from an earlier version of the study) keep their models in that version's folder.
    completed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if not is_reused(t)]
    better = sum(1 for t in completed if t.value is not None and t.value <= loss)
    if better >= settings.keep_models:
        return None
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    integration = integrations.for_model(model_obj)
    try:
        path = integration.save(model_obj, settings.models_dir / f"trial-{trial.number:05d}")
        # Which study and trial the file belongs to, beside it (and in the trial): checked when it is loaded.
        owner = model_files.write_owner(settings.models_dir, study.study_name, trial.number)
    except Exception as exc:  # a model that cannot be saved must not lose the trial's result
        trial.set_user_attr("hb.model_error", f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS])
        return None
    # Keep the best others, this one, and any running trial's (another worker may be saving it right now). Decide
    # on one snapshot taken after the save: a trial that another worker finished while this one was saving is
    # complete by now, and in the list read before saving it was still running; read in two steps, it would be in
    # neither and its model file would be deleted. This trial is ranked in that snapshot too: one that finished
    # better while this one was saving may have pushed it out of the top, and then its own file goes.
    current = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    ranked = sorted(
        [(t.value, t.number) for t in current
         if t.state == TrialState.COMPLETE and t.number != trial.number and not is_reused(t)]
        + [(loss, trial.number)]
    )
    keep = {number for _, number in ranked[: settings.keep_models]}
    keep |= {t.number for t in current if t.state == TrialState.RUNNING and t.number != trial.number}
    for file in settings.models_dir.glob("trial-*"):
        number = model_files.trial_number(file)  # the model and its owner record
        if number is not None and number not in keep:
            _remove(file)
    if trial.number not in keep:
        return None
    relative = str(path.relative_to(settings.run_dir))
    trial.set_user_attr("hb.model", relative)
    trial.set_user_attr("hb.model_owner", owner)
    if settings.artifacts is not None:
        from hyperbrace.artifacts import ARTIFACT_ATTR, remove_model, upload_model

        try:
            upload_model(trial, path, settings.run_dir, settings.artifacts)
        except Exception as exc:  # the chief unreachable for a moment must not lose the trial's result
            trial.set_user_attr("hb.model_error", f"upload: {type(exc).__name__}: {exc}"[:_ERROR_CHARS])
        # A saved model pushes at most a few others out of the top (one each, plus those finishing meanwhile).
        by_number = {t.number: t for t in current}
        for _, number in ranked[settings.keep_models: settings.keep_models + 9]:
            if number != trial.number and ARTIFACT_ATTR in by_number[number].user_attrs:
                remove_model(settings.artifacts, by_number[number].user_attrs[ARTIFACT_ATTR])
    return relative


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
