"""No engine: the chief serves the study on a fixed port and workers join by themselves (Kubernetes, a shell loop).

``minimize(..., cluster=Serve(port=13000))`` starts the gRPC server (study + artifacts) on ``port``, queues the
budget, prints the command workers run, and waits until every trial is done::

    hyperbrace worker --storage grpc://CHIEF:13000 --study NAME

Workers need the same packages and model modules, nothing else: no database password, no shared filesystem
(models come home through the artifact service). A worker that dies is noticed by its heartbeat going silent
(:data:`hyperbrace.launchers._chief.SILENT_S`): its trial is failed and queued again for the others.

>>> Serve(port=13000).addresses()[0]
'0.0.0.0'
"""

from __future__ import annotations

from typing import Any

from hyperbrace.launchers._network import route_to

__all__ = ["Serve"]


class Serve:
    """Serve the study on ``port`` (and ``host``, the address workers dial; default: this machine's address on its
    default route) and let workers join with ``hyperbrace worker --storage grpc://HOST:PORT``."""

    starts_workers = False

    def __init__(self, port: int = 13000, host: str | None = None, bind: str = "0.0.0.0") -> None:
        self.port = port
        self.host = host
        self.bind = bind

    def open(self, n_workers: int) -> None:
        pass

    def addresses(self) -> tuple[str, str]:
        return self.bind, self.host or route_to(None)

    def worker_environment(self, n_workers: int) -> dict[str, str]:
        return {}

    def submit(self, fn: Any, *args: Any) -> Any:
        raise RuntimeError("Serve starts no worker: run `hyperbrace worker --storage grpc://HOST:PORT --study NAME`")

    def close(self) -> None:
        pass
