"""Leave the host process as a search found it: trials run arbitrary code in the user's own process.

A trial (or a library it calls) may add logging handlers (``logging.basicConfig()``, absl's handler), change
warnings filters (``warnings.simplefilter("ignore")``), install signal handlers (training libraries catch SIGTERM
or SIGINT) or replace ``sys.stdout``. :func:`preserved` puts all of these back when the search ends, so the code
that runs after ``minimize()`` (a notebook's next cell, the rest of a script) behaves as it did before.

>>> import logging, warnings
>>> filters, handlers = list(warnings.filters), list(logging.getLogger().handlers)
>>> with preserved():
...     logging.getLogger().addHandler(logging.StreamHandler())
...     warnings.simplefilter("ignore")
>>> warnings.filters == filters, logging.getLogger().handlers == handlers
(True, True)
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

__all__ = ["preserved"]


def _signal_handlers() -> dict[int, Any]:
    handlers = {}
    for number in signal.valid_signals():
        try:
            handler = signal.getsignal(number)
        except (OSError, ValueError):
            continue
        if handler is not None:  # None: installed outside Python, cannot be put back from here
            handlers[number] = handler
    return handlers


def _loggers() -> dict[str, tuple[list[logging.Handler], int]]:
    loggers: dict[str, tuple[list[logging.Handler], int]] = {"": (list(logging.root.handlers), logging.root.level)}
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            loggers[name] = (list(logger.handlers), logger.level)
    return loggers


@contextlib.contextmanager
def preserved() -> Iterator[None]:
    """Restore logging handlers and levels, warnings filters, signal handlers and ``sys.stdout``/``sys.stderr``
    on exit (see the module's docstring). In the main thread only: worker loops that a cluster engine runs in
    threads of its own process (Dask, Ray) share that state with each other, and must not undo each other's."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stdout, stderr = sys.stdout, sys.stderr
    filters, showwarning = list(warnings.filters), warnings.showwarning
    loggers = _loggers()
    handlers = _signal_handlers()
    try:
        yield
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        warnings.filters[:] = filters
        warnings.showwarning = showwarning
        getattr(warnings, "_filters_mutated", lambda: None)()  # drops the cache of "already shown" decisions
        for name, (saved, level) in loggers.items():
            logger = logging.root if name == "" else logging.getLogger(name)
            if logger.handlers != saved:
                logger.handlers[:] = saved
            logger.setLevel(level)
        for number, handler in handlers.items():
            try:
                if signal.getsignal(number) is not handler:
                    signal.signal(number, handler)
            except (OSError, ValueError):
                pass
