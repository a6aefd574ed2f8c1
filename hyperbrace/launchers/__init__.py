"""Where a search's workers run when ``minimize(..., cluster=...)`` is given: one module per engine, one protocol.

``cluster=`` takes

* ``"ray"`` (a local Ray cluster, or the one ``RAY_ADDRESS`` names), ``"auto"`` (the running Ray cluster this
  machine belongs to), ``"ray://host:10001"`` (a remote one through Ray Client), or :class:`Ray` for per-trial
  resources: ``Ray("auto", num_cpus=4, num_gpus=0.5)``;
* a ``dask.distributed.Client`` (so dask-jobqueue's ``SLURMCluster``/``PBSCluster`` and dask-kubernetes work
  unchanged), or :class:`Dask` for resources: ``Dask(client, resources={"GPU": 1})``;
* any ``concurrent.futures.Executor``-like object with ``submit``: submitit's ``AutoExecutor`` (Slurm without Dask or
  Ray), ``mpi4py.futures.MPIPoolExecutor``, loky's executor, a ``ProcessPoolExecutor`` (or :class:`Executor`);
* :class:`Serve` (``Serve(port=13000)``): no engine; workers started by anything else (Kubernetes pods, a shell
  loop on other machines) join with ``hyperbrace worker --storage grpc://CHIEF:13000 --study NAME``.

Engines see no trial: the chief (:mod:`hyperbrace.launchers._chief`) serves the study through a gRPC storage proxy,
asks the engine for ``n_jobs`` *worker loops* (:func:`hyperbrace.launchers._remote.work`), and is told when one
ends or is lost. The core package imports none of the engines; each module here imports its engine when used.

A launcher is any object with these methods (:class:`Launcher`); ``submit`` returns a handle with ``done()``,
``result()`` (raises if the worker was lost) and ``cancel()``.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, Protocol, runtime_checkable

__all__ = ["Launcher", "Ray", "Dask", "Executor", "Serve", "resolve"]


@runtime_checkable
class Launcher(Protocol):
    """Starts worker loops on an engine; the chief knows nothing else about it."""

    def open(self, n_workers: int) -> None:
        """Connect to (or start) the engine, for ``n_workers`` workers at once."""

    def addresses(self) -> tuple[str, str]:
        """``(bind, advertise)``: where the chief's gRPC server listens, and the host workers dial."""

    def worker_environment(self, n_workers: int) -> dict[str, str]:
        """Variables set in each worker before the plan loads (thread caps for its share of the cores)."""

    def submit(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` in a worker; returns a handle with ``done()``, ``result()`` and ``cancel()``."""

    def close(self) -> None:
        """Release what :meth:`open` started (a local cluster); leave the user's own cluster running."""


def __getattr__(name: str) -> Any:
    # The engines' modules load only when named, so `import hyperbrace.launchers` imports no engine.
    if name == "Ray":
        from hyperbrace.launchers.ray import Ray

        return Ray
    if name == "Dask":
        from hyperbrace.launchers.dask import Dask

        return Dask
    if name == "Executor":
        from hyperbrace.launchers.executor import Executor

        return Executor
    if name == "Serve":
        from hyperbrace.launchers.serve import Serve

        return Serve
    raise AttributeError(name)


def resolve(cluster: Any) -> Launcher:
    """The launcher for ``minimize``'s ``cluster=`` argument (see the module's docstring).

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> type(resolve(ThreadPoolExecutor(1))).__name__
    'Executor'
    """
    if isinstance(cluster, Launcher) and not isinstance(cluster, type):
        return cluster
    if isinstance(cluster, str):
        if cluster in ("ray", "auto") or cluster.startswith("ray://"):
            from hyperbrace.launchers.ray import Ray

            return Ray(None if cluster == "ray" else cluster)
        raise ValueError(
            f"cluster={cluster!r}: write cluster='ray' (a local Ray cluster), 'auto' (the running one), "
            "'ray://HOST:10001', a dask.distributed.Client, or an executor (submitit.AutoExecutor, ...)"
        )
    module = type(cluster).__module__
    if module.startswith("distributed") and hasattr(cluster, "scheduler_info"):
        from hyperbrace.launchers.dask import Dask

        return Dask(cluster)
    if isinstance(cluster, concurrent.futures.Executor) or callable(getattr(cluster, "submit", None)):
        from hyperbrace.launchers.executor import Executor

        return Executor(cluster)
    raise TypeError(
        f"cluster= takes 'ray', 'auto', 'ray://HOST:PORT', a dask.distributed.Client, an executor with submit() "
        f"(submitit.AutoExecutor, mpi4py.futures.MPIPoolExecutor, ...) or a hyperbrace.launchers launcher; "
        f"got {cluster!r}"
    )
