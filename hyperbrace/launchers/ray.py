"""Workers on a Ray cluster, each trial with the resources it declares (``num_cpus``, ``num_gpus``, fractions too).

``Ray()`` starts a local Ray (or joins the one ``RAY_ADDRESS`` names), ``Ray("auto")`` joins the cluster this
machine belongs to, ``Ray("ray://head:10001")`` a remote one through Ray Client. If Ray is already initialized in
this process (``ray.init(...)`` in the script), that connection is used and left open. Each worker loop is one Ray
task with ``num_cpus``/``num_gpus``/``resources``, so Ray places loops (and so trials) on machines with free GPUs,
and ``num_gpus=0.5`` runs two trials per GPU; Ray sets ``CUDA_VISIBLE_DEVICES`` in each. A loop whose node or
process dies fails with Ray's error, and the chief fails and queues again its running trial and starts another.
"""

from __future__ import annotations

from typing import Any

from hyperbrace.launchers._network import LOOPBACK, addresses_for, route_to

__all__ = ["Ray"]


class _RayHandle:
    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def done(self) -> bool:
        import ray

        ready, _ = ray.wait([self.ref], timeout=0)
        return bool(ready)

    def result(self) -> Any:
        import ray

        return ray.get(self.ref)

    def cancel(self) -> None:
        import ray

        ray.cancel(self.ref, force=True)


class Ray:
    """Runs worker loops as Ray tasks.

    Args:
        address: None (local, or ``RAY_ADDRESS``), ``"auto"``, or ``"ray://host:port"``.
        num_cpus, num_gpus, resources: what each trial (each worker loop) reserves.
        host: the address workers dial to reach this machine (default: found from the cluster).
        init: more keyword arguments for ``ray.init`` (e.g. ``runtime_env={"working_dir": "."}``).

    >>> Ray("auto", num_gpus=0.5).num_gpus
    0.5
    """

    def __init__(self, address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
                 resources: dict[str, float] | None = None, host: str | None = None, **init: Any) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.resources = resources
        self.host = host
        self.init = init
        self._started = False
        self._task: Any = None
        self._print: Any = None

    def open(self, n_workers: int) -> None:
        import builtins

        import ray

        # Ray's driver replaces builtins.print with its tqdm-safe print (ray.experimental.tqdm_ray) while it shows
        # worker output; close() puts the host's print back.
        self._print = builtins.print
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, **self.init}
            ray.init(address=self.address, **kwargs)
            self._started = True
        from hyperbrace.launchers._remote import work

        self._task = ray.remote(work).options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, resources=self.resources or {},
            max_retries=0,  # a lost loop is the chief's to replace: it first fails the trial the loop was running
        )

    def addresses(self) -> tuple[str, str]:
        import ray

        if self.host is not None:
            return "0.0.0.0", self.host
        if self.address and self.address.startswith("ray://"):
            from urllib.parse import urlsplit

            return "0.0.0.0", route_to(urlsplit(self.address).hostname)
        here = ray.util.get_node_ip_address()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if all(n.get("NodeManagerAddress") == here for n in nodes):
            return LOOPBACK  # every Ray node is this machine
        return addresses_for(here)[0], here

    def worker_environment(self, n_workers: int) -> dict[str, str]:
        from hyperbrace.executor import capped_threads

        return capped_threads(max(1, int(self.num_cpus)))

    def submit(self, fn: Any, *args: Any) -> _RayHandle:
        return _RayHandle(self._task.remote(*args))

    def close(self) -> None:
        import builtins

        if self._started:
            import ray

            ray.shutdown()
            self._started = False
        if getattr(builtins.print, "__module__", "") == "ray.experimental.tqdm_ray" and self._print is not None:
            builtins.print = self._print
