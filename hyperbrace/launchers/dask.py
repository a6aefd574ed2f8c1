"""Workers on a Dask cluster: a ``dask.distributed.Client`` (LocalCluster, dask-jobqueue, dask-kubernetes, ...).

Each worker loop is one long Dask task. Give the cluster one thread per worker process
(``LocalCluster(threads_per_worker=1)``, dask-jobqueue's ``processes=``/``cores=`` alike): trials in threads of one
process would share its standard output and its framework state. ``resources=`` uses Dask's worker resources
(``dask worker --resources "GPU=1"``), so ``Dask(client, resources={"GPU": 1})`` runs one trial per GPU.
A Dask worker that dies (its node lost, the out-of-memory killer) has its task run again elsewhere by Dask; the
loop then fails and queues again the trial the dead one was running.
"""

from __future__ import annotations

from typing import Any

from hyperbrace.launchers._network import addresses_for

__all__ = ["Dask"]


class Dask:
    """Runs worker loops as tasks of ``client``.

    >>> Dask(client=None, resources={"GPU": 1}).resources
    {'GPU': 1}
    """

    def __init__(self, client: Any, resources: dict[str, float] | None = None, host: str | None = None) -> None:
        self.client = client
        self.resources = resources
        self.host = host
        self._futures: list[Any] = []

    def open(self, n_workers: int) -> None:
        pass

    def _scheduler_host(self) -> str | None:
        from urllib.parse import urlsplit

        address = self.client.scheduler.address  # e.g. tcp://10.0.0.5:8786, inproc://...
        return urlsplit(address).hostname if "://" in address else None

    def addresses(self) -> tuple[str, str]:
        if self.host is not None:
            return "0.0.0.0", self.host
        return addresses_for(self._scheduler_host() or "localhost")

    def worker_environment(self, n_workers: int) -> dict[str, str]:
        from hyperbrace.executor import thread_caps

        return thread_caps(n_workers) if self._scheduler_host() in (None, "127.0.0.1", "localhost") else {}

    def submit(self, fn: Any, *args: Any) -> Any:
        future = self.client.submit(fn, *args, pure=False, resources=self.resources, key=f"hyperbrace-worker-{args[2]}")
        self._futures.append(future)
        return future

    def close(self) -> None:
        self._futures.clear()  # the client and its cluster are the user's
