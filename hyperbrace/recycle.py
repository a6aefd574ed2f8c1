"""Worker recycling: a worker whose memory grew past a bound hands over to a fresh process between two trials.

Some frameworks leak a little memory with every model built in one process, whatever the clean-up: TensorFlow
keeps about 3 MB a trial after ``keras.backend.clear_session(free_memory=True)`` (measured:
benchmarks/results/keras_memory_backends.md), so 1,000 trials would add 3 GB. A local worker
(``minimize(n_jobs=N)``) therefore watches its resident memory: it takes its size after its first trial (imports,
first compilation: paid once) as the baseline, and once it has grown by more than the bound it exits between two
trials with :data:`EXIT_RECYCLE`. The process that started it starts a fresh one in its place at once (not
counted as a death); the data stay memory-mapped from the run directory, so the new worker costs its imports only.

The bound is ``HYPERBRACE_WORKER_MAX_GROWTH_MB`` (default 256 MiB; ``0`` turns recycling off). A one-process search
(``n_jobs=1``) on TensorFlow runs its trials in one such worker, for the same reason (see :func:`isolate_trials`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["EXIT_RECYCLE", "Recycle", "MemoryWatch", "max_growth_mb", "isolate_trials", "rss_mb"]

#: A worker's exit status when it left to be replaced by a fresh process (EX_TEMPFAIL: "try again").
EXIT_RECYCLE = 75
ENVIRONMENT_VARIABLE = "HYPERBRACE_WORKER_MAX_GROWTH_MB"
DEFAULT_MAX_GROWTH_MB = 256.0
#: Frameworks known to leak across trials in one process (measured), by the module that shows they are in use.
LEAKING_FRAMEWORKS = ("tensorflow",)
#: Keras backends that leak across trials in one process (measured: benchmarks/results/keras_memory_backends.md).
LEAKING_KERAS_BACKENDS = ("tensorflow", "jax")


class Recycle(Exception):
    """Raised between two trials by :class:`MemoryWatch`: this worker should exit and be replaced."""


def rss_mb() -> float | None:
    """This process's resident memory in MiB (Linux ``/proc``; ``None`` elsewhere).

    >>> rss_mb() is None or rss_mb() > 0
    True
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def max_growth_mb(environ: Mapping[str, str] | None = None) -> float:
    """The growth bound in MiB (0: never recycle), from ``HYPERBRACE_WORKER_MAX_GROWTH_MB``.

    >>> max_growth_mb({}), max_growth_mb({"HYPERBRACE_WORKER_MAX_GROWTH_MB": "0"})
    (256.0, 0.0)
    """
    environ = os.environ if environ is None else environ
    text = environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_GROWTH_MB
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={text!r}: give a number of MiB (e.g. 256), or 0 to never recycle "
                         "worker processes") from None
    return max(0.0, value)


class MemoryWatch:
    """Called after every trial of a worker; raises :class:`Recycle` once memory grew past ``bound_mb``.

    >>> watch = MemoryWatch(bound_mb=100, read=iter([500.0, 550.0, 620.0]).__next__)
    >>> watch(None); watch(None)  # the first trial sets the baseline (500); +50 is within the bound
    >>> watch(None)
    Traceback (most recent call last):
    ...
    hyperbrace.recycle.Recycle: resident memory grew 120 MiB since the first trial (bound 100 MiB)
    """

    def __init__(self, bound_mb: float, then: Callable[[Any], None] | None = None,
                 read: Callable[[], float | None] = rss_mb) -> None:
        self.bound_mb = bound_mb
        self.then = then
        self.read = read
        self.baseline: float | None = None

    def __call__(self, outcome: Any) -> None:
        if self.then is not None:
            self.then(outcome)
        if not self.bound_mb:
            return
        now = self.read()
        if now is None:
            return
        if self.baseline is None:
            self.baseline = now
        elif now - self.baseline > self.bound_mb:
            raise Recycle(f"resident memory grew {now - self.baseline:.0f} MiB since the first trial "
                          f"(bound {self.bound_mb:.0f} MiB)")


def isolate_trials(verbose: bool, modules: Mapping[str, Any] | None = None) -> bool:
    """Whether a one-process search should run its trials in one recycled worker process instead of this one.

    Yes when a framework known to leak across trials is in use (TensorFlow, or Keras on its TensorFlow or JAX
    backend) and recycling is on; no with ``verbose=True`` (the trials' output then shows here, and a debugger works in them).

    >>> isolate_trials(False, modules={"tensorflow": object()}), isolate_trials(True, modules={"tensorflow": 1})
    (True, False)
    >>> isolate_trials(False, modules={"torch": object()})
    False
    """
    modules = sys.modules if modules is None else modules
    if verbose or not max_growth_mb():
        return False
    # Keras on JAX grew ~22 MiB a trial over 15 trials (measured). Keras on PyTorch imports jax, and saving a model
    # may import TensorFlow, so with Keras loaded its backend decides, not which modules happen to be imported.
    keras = modules.get("keras")
    try:
        backend = keras.backend.backend() if keras is not None else None
    except AttributeError:
        backend = None
    if backend is not None:
        return backend in LEAKING_KERAS_BACKENDS
    return any(name in modules for name in LEAKING_FRAMEWORKS)
