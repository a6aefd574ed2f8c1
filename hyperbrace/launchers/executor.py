"""Workers on any ``concurrent.futures.Executor``-like engine: submitit (Slurm), mpi4py.futures, loky, process pools.

>>> from concurrent.futures import ProcessPoolExecutor
>>> launcher = Executor(ProcessPoolExecutor(2))
>>> launcher.addresses()
('127.0.0.1', '127.0.0.1')
"""

from __future__ import annotations

import os
from typing import Any

from hyperbrace.launchers._network import LOOPBACK, addresses_for

__all__ = ["Executor"]

#: Executors whose workers run on this machine (the chief then listens on loopback only).
_LOCAL_TYPES = ("ProcessPoolExecutor", "ThreadPoolExecutor", "LocalExecutor", "DebugExecutor", "_ReusablePoolExecutor",
                "ReusablePoolExecutor")


class Executor:
    """Runs worker loops with ``executor.submit(fn, *args)``; its futures (or submitit jobs) say how they ended.

    Args:
        executor: submitit's ``AutoExecutor``/``SlurmExecutor``/``LocalExecutor``, ``MPIPoolExecutor``, a loky or
            ``ProcessPoolExecutor``; anything whose ``submit`` returns an object with ``done()``, ``result()``,
            ``cancel()``. Configure its resources on it (``executor.update_parameters(gpus_per_node=1, ...)``).
        host: the address workers dial to reach this machine (default: loopback for executors on this machine,
            else this machine's address on its default route).
        threads: thread caps for each worker (default: this machine's cores shared by the workers, for local
            executors; none for remote ones, whose jobs size themselves).
    """

    def __init__(self, executor: Any, host: str | None = None, threads: int | None = None) -> None:
        self.executor = executor
        self.host = host
        self.threads = threads

    @property
    def is_local(self) -> bool:
        if type(self.executor).__name__ == "AutoExecutor":
            return getattr(self.executor, "cluster", "") in ("local", "debug")
        return type(self.executor).__name__ in _LOCAL_TYPES

    def open(self, n_workers: int) -> None:
        pass

    def addresses(self) -> tuple[str, str]:
        if self.host is not None:
            return ("127.0.0.1", self.host) if self.host.startswith("127.") else ("0.0.0.0", self.host)
        return LOOPBACK if self.is_local else addresses_for(None)

    def worker_environment(self, n_workers: int) -> dict[str, str]:
        from hyperbrace.executor import capped_threads, thread_caps

        if self.threads is not None:
            # threads= overrides the user's variables (not their other XLA flags, which are kept)
            return capped_threads(self.threads, environ={k: v for k, v in os.environ.items() if k == "XLA_FLAGS"})
        return thread_caps(n_workers) if self.is_local else {}

    def submit(self, fn: Any, *args: Any) -> Any:
        return self.executor.submit(fn, *args)

    def close(self) -> None:
        pass  # the executor is the user's: they shut it down
