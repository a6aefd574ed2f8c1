"""Suite-wide guards.

The suite runs in parallel processes (pytest-xdist, ``make test``), so a test runs after whatever tests its process
ran before, in an order that changes from run to run. A test that leaves SIGINT ignored or handled differently breaks
every later Ctrl-C test of its process (its own ``KeyboardInterrupt`` never comes, and child processes inherit an
ignored SIGINT). hyperbrace itself leaves the host process as it found it (``hyperbrace/_process_state.py``, tested
in tests/test_faults.py); this guard catches what a test or a library did, names the test, and puts Python's
handler back so that the next test starts clean.

A suite started in the background (``make test &``, ``nohup``, some CI runners) inherits SIGINT *ignored* from its
shell, and so would every process it starts: Python installs its ``KeyboardInterrupt`` handler only where SIGINT is
not ignored, and an ignored signal stays ignored across ``exec``. The Ctrl-C tests would then wait for an interrupt
that never comes. So the suite restores Python's handler once, here, before any test or child process starts.
"""

from __future__ import annotations

import signal
import threading
import warnings

import pytest


if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


class SignalHandlerLeaked(UserWarning):
    """A test left the process's SIGINT handler changed."""


@pytest.fixture(autouse=True)
def _sigint_left_as_found(request: pytest.FixtureRequest):
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    if after is not before:
        signal.signal(signal.SIGINT, before)
        warnings.warn(f"{request.node.nodeid} left SIGINT's handler as {after!r} (was {before!r}); put back",
                      SignalHandlerLeaked, stacklevel=1)
