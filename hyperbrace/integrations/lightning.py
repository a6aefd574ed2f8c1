"""PyTorch Lightning (``lightning`` or ``pytorch_lightning``): automatic pruning, the trial's log, Ctrl-C, models.

What a trial that calls ``Trainer.fit`` gets, with no change to the model code:

* **Pruning.** In a search with ``prune=...``, every ``Trainer.fit`` gets one more callback,
  :class:`PruningCallback`, which does what Optuna's ``PyTorchLightningPruningCallback`` (optuna-integration) does
  without the user writing it: after each validation run (not the sanity check) it reports the monitored metric
  (``minimize(prune_on=...)``; by default the validation metric, e.g. what ``self.log("val_acc", ...)`` logs, that
  the model's returned loss turns out to be: :mod:`hyperbrace.prune_on`) to the pruner,
  and raises :class:`hyperbrace.Pruned` when the pruner judges the trial hopeless. The user's callbacks are kept;
  a fit whose trainer already has a pruning callback (this one, or optuna-integration's) gets no second one.
  Steps are epochs trained by the trial (counted over all its fits), as for Keras.
* **The trial's log.** Lightning's messages (``GPU available``, the model summary, ``max_epochs reached``) go
  through its loggers, whose console handler holds the stderr of the moment Lightning was imported. While a
  trial runs, those handlers write to the trial's log instead (and get their stream back afterwards).
* **Ctrl-C.** Lightning catches ``KeyboardInterrupt`` inside ``fit``, ignores SIGINT from then on and calls
  ``sys.exit(1)``. Inside a trial that exit is turned back into ``KeyboardInterrupt`` (and the SIGINT handler is
  restored), so the trial is failed and queued again like any interrupted trial, and the search resumes.
* **Models.** A ``LightningModule`` is a ``torch.nn.Module``: it is saved whole with ``torch.save`` (cloudpickle,
  without its trainer) as ``.pt`` and reloads with :func:`hyperbrace.integrations.torch.load`.

The fit wrapper is installed once per process, the first time a trial runs with Lightning imported. Outside a
trial it calls Lightning's ``fit`` untouched.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from hyperbrace import prune_on as _prune_on
from hyperbrace._context import Pruned, TrialContext, current_trial
from hyperbrace.integrations import torch as _torch

FRAMEWORK = "lightning"
#: Either package activates this integration (``pytorch_lightning`` is the older name of ``lightning.pytorch``).
PACKAGES = ("lightning.pytorch", "pytorch_lightning")
SUFFIX = _torch.SUFFIX

__all__ = ["PruningCallback", "is_model", "save", "load", "before_trial", "after_trial"]

_EPOCHS = "lightning.epochs"  # epochs finished by the trial's earlier fits: the step offset of the next fit
_HANDLERS = "lightning.handlers"  # (handler, stream) pairs swapped to the trial's log, restored after it
# Loggers that Lightning gives a console handler of their own (at import, when the root logger has none).
_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")


def _packages() -> list[Any]:
    return [sys.modules[name] for name in PACKAGES if name in sys.modules]


def is_model(obj: Any) -> bool:
    return any(isinstance(obj, package.LightningModule) for package in _packages())


def save(obj: Any, stem: Path) -> Path:
    return _torch.save(obj, stem)


def load(path: Path, **kwargs: Any) -> Any:
    return _torch.load(path, **kwargs)


def before_trial(context: TrialContext) -> None:
    for package in _packages():
        _wrap_fit(package)
    context.extras[_EPOCHS] = 0
    # Lightning's console handlers write to the trial's log (sys.stderr is the log while the trial runs).
    swapped = []
    for name in _LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if type(handler) is logging.StreamHandler and handler.stream is not sys.stderr:
                swapped.append((handler, handler.setStream(sys.stderr)))
    context.extras[_HANDLERS] = swapped


def after_trial(context: TrialContext) -> None:
    for handler, stream in context.extras.pop(_HANDLERS, ()):
        handler.setStream(stream)


class _Pruning(_prune_on.WatchingCallback):
    """What the pruning callback does; mixed into each Lightning package's ``Callback`` class below."""

    def __init__(self, metric: str | tuple[str, str] = _prune_on.AUTO) -> None:
        super().__init__()
        _prune_on.check_prune_on(metric)
        self.prune_on = metric
        self.watch = _prune_on.MetricWatch(None, metric)  # the trial's own watch from on_fit_start on
        self.pruned_at: int | None = None  #: the trial's epoch (counted over all its fits) at which it was pruned
        self._seen = False
        self._offset = 0
        self._context: TrialContext | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        # Lightning runs hooks in the thread that called fit, where the trial's context is current.
        self._context = current_trial()
        self._seen = False
        self.pruned_at = None
        self._offset = self._context.extras.get(_EPOCHS, 0) if self._context is not None else 0
        if self._context is not None:
            self.watch = _prune_on.watch(self._context, self.prune_on)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        context = self._context
        if context is None or trainer.sanity_checking:
            return  # the sanity check validates an untrained model: not an epoch's result
        logs = dict(trainer.callback_metrics)
        self._seen = self._seen or self.watch.finds_metric_in(logs)
        step = self._offset + trainer.current_epoch + 1
        # After the fit's last epoch the training is done: pruning it then would only throw the model away.
        last = trainer.max_epochs is not None and 0 < trainer.max_epochs <= trainer.current_epoch + 1
        if self.watch.observe(step, logs, last=last):
            self.pruned_at = step
            raise Pruned(f"pruned after epoch {step}: {self.metric} = {self.watch.last_value:.6g}")

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._finish(trainer)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._finish(trainer)

    def _finish(self, trainer: Any) -> None:
        context = self._context
        if context is None:
            return
        context.extras[_EPOCHS] = max(context.extras.get(_EPOCHS, 0), self._offset + trainer.current_epoch)
        if self._seen or self.pruned_at is not None or trainer.sanity_checking:
            return
        logged = ", ".join(sorted(trainer.callback_metrics)) or "none"
        if self.watch.metric is None:
            what, example = "a validation metric, which prune_on='auto' judges trials by", "'val_loss'"
        else:
            what, example = f"{self.metric!r}, the metric the pruner watches", repr(self.metric)
        context.warn_once(
            f"lightning-metric:{self.metric}",
            f"pruning is off: Trainer.fit never logged {what} (logged: {logged}). Log it in validation_step "
            f"(self.log({example}, loss)), choose a logged metric with minimize(prune_on=...), or turn pruning off "
            "with minimize(prune=None).",
        )


_classes: dict[str, type] = {}


def _callback_class(package: Any) -> type:
    """The pruning callback class for ``package`` (Lightning accepts only subclasses of its own ``Callback``)."""
    name = package.__name__
    if name not in _classes:
        _classes[name] = type("PruningCallback", (_Pruning, package.Callback), {
            "__doc__": _Pruning.__doc__, "__module__": __name__,
        })
    return _classes[name]


def PruningCallback(metric: str | tuple[str, str] = "auto") -> Any:  # noqa: N802  (used as a class)
    """A callback that reports ``metric`` after each validation run and prunes; hyperbrace adds one by itself.

    For a trainer that should report another metric than ``minimize(prune_on=...)``, pass one explicitly
    (``Trainer(callbacks=[PruningCallback(("val_f1", "max"))])``); the automatic one is then left out.
    Higher-is-better metrics are reported negated, as the search minimizes.

    >>> import lightning.pytorch as pl
    >>> callback = PruningCallback("val_acc")
    >>> isinstance(callback, pl.Callback), callback.direction
    (True, 'max')
    """
    packages = _packages()
    if not packages:
        raise ImportError("PruningCallback needs lightning (or pytorch_lightning) imported first")
    return _callback_class(packages[0])(metric)


def _has_pruning(callbacks: list[Any]) -> bool:
    """Whether the user's trainer already prunes (ours, or optuna-integration's callback)."""
    return any(isinstance(c, _Pruning) or type(c).__name__ == "PyTorchLightningPruningCallback" for c in callbacks)


_wrap_lock = threading.Lock()


def _wrap_fit(package: Any) -> None:
    """Wrap ``package.Trainer.fit`` (once per process): pruning, and Lightning's Ctrl-C exit as an interrupt."""
    with _wrap_lock:
        trainer_class = package.Trainer
        if getattr(trainer_class.fit, "__hyperbrace_wrapped__", False):
            return
        original = trainer_class.fit
        callback_class = _callback_class(package)

        @functools.wraps(original)
        def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
            context = current_trial()
            if context is None:
                return original(self, *args, **kwargs)
            added = None
            if context.pruning_enabled and not _has_pruning(self.callbacks):
                added = callback_class(context.extras.get("prune_on", _prune_on.AUTO))
                self.callbacks.append(added)
            main_thread = threading.current_thread() is threading.main_thread()
            sigint = signal.getsignal(signal.SIGINT) if main_thread else None
            try:
                return original(self, *args, **kwargs)
            except SystemExit as exc:
                # Lightning's answer to Ctrl-C: it caught KeyboardInterrupt, set SIGINT to "ignore" and exited.
                if not isinstance(exc.__context__, KeyboardInterrupt):
                    raise
                if main_thread and sigint is not None:
                    signal.signal(signal.SIGINT, sigint)
                raise KeyboardInterrupt("interrupted inside Trainer.fit") from None
            finally:
                if added is not None and added in self.callbacks:
                    self.callbacks.remove(added)

        fit.__hyperbrace_wrapped__ = True  # type: ignore[attr-defined]
        trainer_class.fit = fit
