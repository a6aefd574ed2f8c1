"""Math-library threads for a one-process search (``n_jobs=1``): as many as the machine has idle cores.

PyTorch (and Keras on it) starts one intra-op thread per core. On a machine whose cores are busy with other work,
those threads wait for each other at every operation: 12 small Keras trials on a busy 2-core machine took 195 s with
the default threads and 21.6 s with one. On an idle machine more threads are faster. So while a one-process search
runs, hyperbrace caps PyTorch's intra-op threads at the cores that are idle when it starts (the cores this process
may use, minus the 1-minute load average, at least 1), and restores the setting afterwards; measurements:
``benchmarks/results/threads-*.md`` and docs/search.md.

It only ever lowers the thread count, never while ``OMP_NUM_THREADS`` is set (set it to choose the threads
yourself: it is the variable PyTorch reads). Worker processes (``n_jobs > 1``) get their share of the cores
through the environment instead (:func:`hyperbrace.executor.thread_caps`). The core package imports no framework:
this acts only on a PyTorch that the program has already imported.

>>> idle_cores(cores=8, load=2.6)
5
>>> idle_cores(cores=2, load=9.0)
1
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["idle_cores", "one_process_threads"]


def idle_cores(cores: int | None = None, load: float | None = None) -> int:
    """Cores not busy with other work: ``cores`` (default: this process's) minus the load average, at least 1."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # no load average (Windows): assume idle
            load = 0.0
    return max(1, min(cores, cores - round(load)))


@contextlib.contextmanager
def one_process_threads() -> Iterator[int | None]:
    """Within the block, PyTorch's intra-op threads are capped at :func:`idle_cores` (if PyTorch is imported and
    ``OMP_NUM_THREADS`` is not set); yields the cap set, or None where nothing was changed."""
    torch = sys.modules.get("torch")
    if "OMP_NUM_THREADS" in os.environ or torch is None or not hasattr(torch, "get_num_threads"):
        yield None
        return
    before = torch.get_num_threads()
    cores = idle_cores()
    if cores >= before:
        yield None
        return
    torch.set_num_threads(cores)
    try:
        yield cores
    finally:
        torch.set_num_threads(before)

