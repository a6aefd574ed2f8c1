"""Keras 3 (any backend): ``.keras`` model files, ``clear_session()`` after every trial, and automatic pruning.

Pruning needs no change to the model code. While a trial of a search with ``prune=...`` runs, every
``Model.fit`` gets one more callback, :class:`PruningCallback`, which reports the monitored metric
(``minimize(prune_on=...)``; by default the validation metric the model's returned loss turns out to be, see
:mod:`hyperbrace.prune_on`) to the pruner after each epoch. When the pruner judges the
trial hopeless, the callback stops training at the end of that epoch and ``fit`` raises :class:`hyperbrace.Pruned`,
so the trial is recorded as pruned with its last reported value.

The callback is added by wrapping ``keras.Model.fit`` once, the first time a trial runs with Keras imported. Outside
a trial, or in a search without pruning, the wrapper calls the original ``fit`` untouched.
"""

from __future__ import annotations

import functools
import gc
import inspect
import os
import sys
import threading
from pathlib import Path
from typing import Any

import keras

from hyperbrace import prune_on as _prune_on
from hyperbrace._context import Pruned, TrialContext, current_trial

FRAMEWORK = "keras"
SUFFIX = ".keras"

__all__ = ["PruningCallback", "is_model", "save", "load", "before_trial", "after_trial", "collect_if_grown"]

# extras keys in the TrialContext (one context per trial, so the counts are per trial)
_EPOCHS = "keras.epochs"  # epochs run by all fit() calls of the trial so far: the step reported to the pruner
_IN_FIT = "keras.in_fit"  # a fit() running inside a fit() (e.g. from a callback) must not report twice
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # hyperbrace's own files


def is_model(obj: Any) -> bool:
    return isinstance(obj, keras.Model)


def save(obj: Any, stem: Path) -> Path:
    path = stem.with_suffix(SUFFIX)
    obj.save(path)
    return path


def load(path: Path, custom_objects: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    return keras.saving.load_model(path, custom_objects=custom_objects, **kwargs)


def before_trial(context: TrialContext) -> None:
    _wrap_fit()
    context.extras[_EPOCHS] = 0


def after_trial(context: TrialContext) -> None:
    # Each trial builds a new model; without this, Keras' global state (layer names, graphs) keeps growing.
    # clear_session() resets that state at once (cheap); the garbage collection that frees the trial's model (its
    # layers hold reference cycles) costs 0.2-1 s once PyTorch and Keras are imported, which short pruned trials
    # paid every time. It runs only when resident memory has grown by GC_GROWTH_MIB since the last one
    # (benchmarks/results/keras_cleanup.md: memory stays bounded, the time goes).
    if _keras_was_used():
        keras.backend.clear_session(free_memory=False)
        collect_if_grown()


#: Resident-memory growth (MiB) since the last collection that makes :func:`collect_if_grown` collect.
GC_GROWTH_MIB = 64.0
_collected_at: list[float] = []  # RSS (MiB) right after the last collection


def collect_if_grown(growth_mib: float | None = None) -> bool:
    """Run ``gc.collect()`` if this process's resident memory grew by ``growth_mib`` (default
    :data:`GC_GROWTH_MIB`) since the last time it did; returns whether it collected. Where resident memory cannot
    be read (no ``/proc``), it always collects.

    >>> collect_if_grown(growth_mib=float("inf"))  # sets (or keeps) the baseline: nothing to collect yet
    False
    """
    rss = _rss_mib()
    limit = GC_GROWTH_MIB if growth_mib is None else growth_mib
    if rss is not None and _collected_at and rss - _collected_at[-1] <= limit:
        return False
    if rss is not None and not _collected_at:
        _collected_at.append(rss)  # the first trial sets the baseline
        return False
    gc.collect()
    _collected_at[:] = [_rss_mib() or 0.0]
    return True


def _rss_mib() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def _keras_was_used() -> bool:
    """Whether Keras created global state since the last clear (a trial that built no Keras model did not).

    Skipping the clear for such trials matters: it collects garbage, 0.2 to 1 s per trial once PyTorch and Keras
    are imported, which a search of non-Keras trials in a program that imported Keras would pay every time.
    """
    try:
        from keras.src.backend.common.global_state import GLOBAL_STATE_TRACKER
    except ImportError:  # a Keras whose internals moved: clear every time, as before
        return True
    return bool(set(vars(GLOBAL_STATE_TRACKER)) - {"nnx_enabled"})


class PruningCallback(_prune_on.WatchingCallback, keras.callbacks.Callback):
    """Reports ``metric`` after every epoch to the running trial, and stops training when the pruner says so.

    hyperbrace adds it to every ``fit`` of a pruned search by itself; it is public for code that builds its own
    callback list, e.g. to report another metric in one particular ``fit``::

        model.fit(x, y, validation_data=(x_val, y_val), epochs=20,
                  callbacks=[PruningCallback(("val_auc", "max"))])

    A callback given this way replaces the automatic one for that ``fit``. ``metric`` takes the forms of
    ``minimize(prune_on=...)``: ``"auto"`` (the validation metric the model's loss is, learnt from the first
    completed trial), a name whose direction is clear (``"val_loss"``, ``"val_accuracy"``), or
    ``(name, "min" | "max")``. Higher-is-better metrics are reported negated, as the search minimizes.

    >>> PruningCallback("val_accuracy").direction
    'max'
    """

    def __init__(self, metric: str | tuple[str, str] = _prune_on.AUTO) -> None:
        super().__init__()
        _prune_on.check_prune_on(metric)
        self.prune_on = metric
        self.watch = _prune_on.MetricWatch(None, metric)  # the trial's own watch from on_train_begin on
        self.pruned_at: int | None = None  #: the trial's epoch (counted over all its fits) at which it was pruned
        self.called_from: tuple[str, int] | None = None  #: the user's fit call (file, line), for warnings
        self._seen = False
        self._context: TrialContext | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # Keras runs callbacks in the thread that called fit, where the trial's context is current.
        self._context = current_trial()
        if self._context is not None:
            self.watch = _prune_on.watch(self._context, self.prune_on)
        self._seen = False
        self.pruned_at = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        context = self._context
        if context is None:
            return
        # Count every epoch, reported or not, so steps stay "epochs trained" even with validation_freq > 1.
        context.extras[_EPOCHS] = step = context.extras.get(_EPOCHS, 0) + 1
        self._seen = self._seen or self.watch.finds_metric_in(logs or {})
        last = epoch + 1 >= self.params.get("epochs", float("inf"))
        if self.watch.observe(step, logs or {}, last=last):
            self.pruned_at = step
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        context = self._context
        if context is None or self._seen or self.pruned_at is not None:
            return
        available = ", ".join(sorted(logs or {})) or "none"
        what = ("a validation metric, which prune_on='auto' judges trials by" if self.watch.metric is None
                else f"{self.metric!r}, the metric the pruner watches")
        context.warn_once(
            f"keras-metric:{self.metric}",
            f"pruning is off: Model.fit never logged {what} (fit logged: {available}). Give fit validation data "
            "(validation_data=... or validation_split=...), choose a logged metric with minimize(prune_on=...), "
            "or turn pruning off with minimize(prune=None).",
            where=self.called_from,
        )


_wrap_lock = threading.Lock()


def _user_call() -> tuple[str, int]:
    """(file, line) of the user's ``fit`` call, where a warning should point: the first caller outside hyperbrace
    (another of hyperbrace's ``fit`` wrappers, e.g. TensorBoard's, may stand between)."""
    frame = sys._getframe(2)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
    return frame.f_code.co_filename, frame.f_lineno


def _wrap_fit() -> None:
    """Wrap ``keras.Model.fit`` (once per process) so that fits inside a pruned trial get a PruningCallback."""
    with _wrap_lock:
        if getattr(keras.Model.fit, "__hyperbrace_wrapped__", False):
            return
        original = keras.Model.fit
        signature = inspect.signature(original)

        @functools.wraps(original)
        def fit(self: keras.Model, *args: Any, **kwargs: Any) -> Any:
            context = current_trial()
            if context is None or not context.pruning_enabled or context.extras.get(_IN_FIT):
                return original(self, *args, **kwargs)
            bound = signature.bind(self, *args, **kwargs)
            given = bound.arguments.get("callbacks")
            callback, callbacks = _with_pruning_callback(given, context, self)
            bound.arguments["callbacks"] = callbacks
            callback.called_from = _user_call()
            context.extras[_IN_FIT] = True
            try:
                history = original(*bound.args, **bound.kwargs)
            finally:
                context.extras[_IN_FIT] = False
                if isinstance(given, keras.callbacks.CallbackList) and callback in given.callbacks:
                    given.callbacks.remove(callback)  # the user's list, borrowed for this fit only
            if callback.pruned_at is not None:
                last = callback.watch.last_value
                shown = "nan" if last is None else f"{last:.6g}"
                raise Pruned(f"pruned after epoch {callback.pruned_at}: {callback.metric} = {shown}")
            return history

        fit.__hyperbrace_wrapped__ = True  # type: ignore[attr-defined]
        keras.Model.fit = fit


def _with_pruning_callback(given: Any, context: TrialContext, model: keras.Model) -> tuple[PruningCallback, Any]:
    """The user's callbacks plus a PruningCallback (theirs, if they passed one), in the form fit accepts."""
    listed = given.callbacks if isinstance(given, keras.callbacks.CallbackList) else list(given or [])
    existing = next((c for c in listed if isinstance(c, PruningCallback)), None)
    if existing is not None:
        return existing, given
    callback = PruningCallback(context.extras.get("prune_on", _prune_on.AUTO))
    if isinstance(given, keras.callbacks.CallbackList):  # fit uses a CallbackList as it is: add ours to it
        callback.set_model(model)
        callback.set_params(given.params)
        given.callbacks.append(callback)
        return callback, given
    # Last, so that it sees the logs after the user's callbacks have run (and e.g. added their metrics).
    return callback, [*listed, callback]
