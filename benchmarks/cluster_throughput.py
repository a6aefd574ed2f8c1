"""Throughput on cluster engines next to local workers, the cost per trial through the gRPC proxy, and the
wall-clock price of ``reproducible=True``.

Part 1: a search whose objective sleeps 1 s runs with 1, 2, 4, 8 and 16 workers as ``minimize(n_jobs=N)`` (local
worker processes), ``cluster=Ray(num_cpus=1)`` on a local Ray (``ray.init(num_cpus=16)``: sleeping trials need no
core) and ``cluster=client`` on a Dask scheduler and 16 one-thread workers started with ``dask scheduler`` and
``dask worker`` (processes of their own, as on a real cluster). Steady state and end
to end are measured as in ``parallel_throughput.py``. Ray's and Dask's worker processes stay up between rows (as on
a real cluster), local worker processes are started by each search. Each row also gives the chief's CPU time per
trial (this process: for Ray and Dask it serves every worker's storage calls through the gRPC proxy), the storage
calls served per trial and the claims lost to another worker; the row "Dask, claims from the lowest (before)"
runs Dask again with every worker claiming the lowest waiting trial first, as before claims were staggered. Before
the rows, the CPU used by each engine's idle processes is measured for 10 s.

Part 2: hyperbrace's own cost per trial through the proxy: a free objective (``return x * x``), 300 trials, run by
one worker loop on a process pool (``cluster=ProcessPoolExecutor(1)``) through the chief's gRPC proxy, next to
the same search in one process on the journal file, and a plain Optuna ask/tell loop on a ``GrpcStorageProxy``
(same server, same journal). Per-trial times come from the trials' own start/end times (start-up excluded).

Part 3: ``reproducible=True`` (batches of 8) against the asynchronous default, 4 workers, 32 trials whose duration
depends on the configuration (0.5 to 1.5 s): a batch waits for its slowest trial.

    python benchmarks/cluster_throughput.py   # writes benchmarks/results/cluster_throughput.md
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from hyperbrace import minimize, uniform  # noqa: E402,F401  (the objectives' templates name uniform)
from parallel_throughput import _steady_state, machine, sleeping_objective  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


def free_objective():
    x = {{uniform(-1, 1)}}
    return x * x


def uneven_objective():
    x = {{uniform(-1, 1)}}
    time.sleep(1.0 + 0.5 * x)  # 0.5 to 1.5 s, by configuration
    return x * x


class ChiefCounters:
    """What the chief does for a search's workers: its own CPU time (this process: the gRPC proxy serving every
    worker's storage calls, the watch loop), the storage calls served, and the claims lost to another worker
    (a ``WAITING -> RUNNING`` request answered "already taken"). Counted by wrapping Optuna's proxy servicer."""

    def __init__(self) -> None:
        from optuna.storages._grpc import servicer

        self.calls = 0
        self.lost_claims = 0
        cls = servicer.OptunaStorageProxyService
        for name in [n for n in vars(cls) if n[:1].isupper() and callable(getattr(cls, n))]:
            setattr(cls, name, self._counted(getattr(cls, name), name))

    def _counted(self, method, name):
        def counted(servicer, request, context):
            reply = method(servicer, request, context)
            self.calls += 1
            if name == "SetTrialStateValues" and request.state == 0 and not reply.trial_updated:  # 0: RUNNING
                self.lost_claims += 1
            return reply

        return counted

    def start(self) -> None:
        self.calls = self.lost_claims = 0
        times = os.times()
        self._cpu = times.user + times.system

    def cpu(self) -> float:
        times = os.times()
        return times.user + times.system - self._cpu


def _idle_cpu(pids: list[int], seconds: float = 10.0) -> float:
    """Cores used by these processes and their descendants while no search runs."""
    import psutil

    def total() -> float:
        spent = 0.0
        for pid in pids:
            try:
                root = psutil.Process(pid)
                for process in [root] + root.children(recursive=True):
                    times = process.cpu_times()
                    spent += times.user + times.system
            except psutil.Error:
                pass
        return spent

    before = total()
    time.sleep(seconds)
    return (total() - before) / seconds


def _search(objective, root: Path, **kwargs):
    started = time.perf_counter()
    result = minimize(objective, study_name=f"bench-{uuid.uuid4().hex[:8]}", directory=root, show_progress=False,
                      prune=None, keep_models=0, **kwargs)
    return result, time.perf_counter() - started


def throughput_rows(engines: dict, workers: list[int], per_worker: int, root: Path,
                    counters: ChiefCounters) -> list[str]:
    rows = []
    for n in workers:
        for name, cluster in engines.items():
            if "(before)" in name and n < 4:
                continue  # one or two workers seldom claim at the same moment: nothing to compare
            counters.start()
            result, wall = _search(sleeping_objective, root, max_evals=n * per_worker, n_jobs=n,
                                   cluster=cluster() if callable(cluster) else cluster)
            cpu = counters.cpu()
            trials = [t for t in result.study.get_trials() if t.state == TrialState.COMPLETE]
            assert len(trials) == n * per_worker
            steady = _steady_state(trials)
            served = (f"{counters.calls / len(trials):.1f} | {counters.lost_claims}" if counters.calls else "- | -")
            rows.append(f"| {name} | {n} | {len(trials)} | {wall:.1f} | {steady:.2f} | {steady / n:.0%} | "
                        f"{len(trials) / wall:.2f} | {len(trials) / wall / n:.0%} | {1000 * cpu / len(trials):.0f} | "
                        f"{served} |")
            print(rows[-1], flush=True)
    return rows


def _per_trial_ms(result) -> float:
    trials = sorted((t for t in result.study.get_trials() if t.state == TrialState.COMPLETE), key=lambda t: t.number)
    first, last = trials[0], trials[-1]
    span = (last.datetime_complete - first.datetime_start).total_seconds()
    return 1000 * span / len(trials)


def proxy_cost(n: int, root: Path) -> list[str]:
    local, _ = _search(free_objective, root, max_evals=n, algo="random", seed=0)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        proxied, _ = _search(free_objective, root, max_evals=n, algo="random", seed=0, cluster=pool)
    # A plain Optuna loop through the same kind of server (Optuna's proxy over a journal file).
    from hyperbrace.artifacts import chief_store
    from hyperbrace.launchers.proxy import ProxyServer
    from hyperbrace.storage import open_grpc_proxy
    from optuna.storages.journal import JournalFileBackend

    (root / "plain").mkdir()
    server = ProxyServer(optuna.storages.JournalStorage(JournalFileBackend(str(root / "plain" / "j.journal"))),
                         chief_store(root / "plain"))
    address = server.start("127.0.0.1")
    study = optuna.create_study(storage=open_grpc_proxy(f"grpc://{address}"),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    started = time.perf_counter()
    for _ in range(n):
        trial = study.ask()
        study.tell(trial, trial.suggest_float("x", -1, 1) ** 2)
    plain = 1000 * (time.perf_counter() - started) / n
    server.stop()
    a, b = _per_trial_ms(local), _per_trial_ms(proxied)
    return [
        f"| hyperbrace, one process, journal file | {n} | {a:.1f} |",
        f"| hyperbrace, one worker loop through the gRPC proxy (journal behind it) | {n} | {b:.1f} |",
        f"| plain Optuna ask/tell through the same gRPC proxy | {n} | {plain:.1f} |",
        "",
        f"hyperbrace's own cost through the proxy: {b - plain:.1f} ms per trial over the plain loop "
        f"({b / plain:.1f}x); the proxy itself: {b - a:+.1f} ms per trial over hyperbrace on the journal directly.",
    ]


def reproducible_cost(root: Path, n_jobs: int = 4, n: int = 32) -> list[str]:
    rows = []
    walls = {}
    for label, option in (("asynchronous (default)", False), ("reproducible=True (batches of 8)", True)):
        result, wall = _search(uneven_objective, root, max_evals=n, n_jobs=n_jobs, seed=0, reproducible=option)
        trials = [t for t in result.study.get_trials() if t.state == TrialState.COMPLETE]
        steady = _steady_state(trials)
        walls[label] = wall
        best = min(t.value for t in trials)
        rows.append(f"| {label} | {n_jobs} | {n} | {wall:.1f} | {steady:.2f} | {best:.4f} |")
        print(rows[-1], flush=True)
    a, b = walls.values()
    rows += ["", f"reproducible=True took {b / a:.2f}x the asynchronous wall time here."]
    return rows


def _claims_from_lowest(on: bool) -> None:
    """Run in each Dask worker: claim as before this change (every worker tries the lowest waiting trial first)."""
    import hyperbrace.search
    import hyperbrace.tickets

    claim = hyperbrace.tickets.claim_ticket
    hyperbrace.search.claim_ticket = (lambda study, first=0: claim(study, 0)) if on else claim


def _start_ray(ray, most: int):
    """Ray with ``most`` one-CPU slots, or why not. Ray gives its node a hard-coded 30 s to register
    (``raylet_start_wait_time_s = 30`` in ray/_private/node.py; no variable or ``_system_config`` changes it), and
    its raylet starts one Python worker per CPU at once (``--num_prestart_python_workers``), which on a loaded
    2-core machine is what runs past the 30 s. So: three tries with ``num_cpus=most``, then one CPU and a custom
    resource of ``most`` slots (each trial asks for one slot and no CPU; workers then start on demand)."""
    failure = ""
    for attempt in range(4):
        kwargs = {"num_cpus": most} if attempt < 3 else {"num_cpus": 1, "resources": {"slot": most}}
        try:
            ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
            return kwargs, failure
        except Exception as exc:  # noqa: BLE001
            ray.shutdown()
            failure += f"try {attempt + 1} with {kwargs}: {type(exc).__name__}: {str(exc)[:80]}; "
            time.sleep(5)
    return None, failure


def _dask_cluster(n_workers: int):
    """A Dask scheduler and ``n_workers`` one-thread workers started with Dask's own command, and a client."""
    import socket
    import subprocess

    from distributed import Client

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dask = str(Path(sys.executable).with_name("dask"))
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = subprocess.Popen([dask, "worker", address, "--nworkers", str(n_workers), "--nthreads", "1",
                                "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = Client(address, timeout=300)
    client.wait_for_workers(n_workers, timeout=600)
    return client, [workers, scheduler]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--trials-per-worker", type=int, default=5)
    parser.add_argument("--proxy-trials", type=int, default=300)
    parser.add_argument("--engines", nargs="+", default=["local", "ray", "dask", "dask-lowest-first"],
                        help="dask-lowest-first: Dask again, its workers claiming as before the claims were "
                             "staggered (every worker tries the lowest waiting trial first)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cluster_throughput.md"))
    args = parser.parse_args()
    import ray

    from hyperbrace.launchers import Ray

    header = machine()
    command = "python benchmarks/cluster_throughput.py " + " ".join(sys.argv[1:])
    lines = [
        "# Cluster engines: throughput, cost per trial through the gRPC proxy, price of reproducible=True",
        "",
        f"Machine: {header}. Ray {ray.__version__}, Dask distributed {__import__('distributed').__version__}. "
        f"Produced by `{command.strip()}`. The machine is shared with other sessions' work, "
        "so absolute figures move between runs: compare the rows of one run (ratios), not with other files.",
        "",
        f"## Throughput: 1 s sleeping trials, {args.trials_per_worker} trials per worker",
        "",
        "Ideal: N workers finish N trials per second. *Steady state*: trials finished while every worker runs; "
        "*end to end*: all trials over the whole call (including starting local worker processes; Ray's and "
        "Dask's workers are already up, as on a running cluster, but each search still loads its plan in them "
        "and starts the chief's gRPC server). *Chief CPU*: CPU time of the calling process (for Ray and Dask: "
        "the gRPC proxy serving every worker's storage calls) per trial; *calls*: storage calls the proxy served "
        "per trial; *lost claims*: claims of a waiting trial that another worker had just taken.",
        "",
    ]
    table = [
        "| engine | workers | trials | wall (s) | steady state (trials/s) | vs ideal | end to end (trials/s) | vs ideal "
        "| chief CPU (ms/trial) | calls/trial | lost claims |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    counters = ChiefCounters()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        most = max(args.workers)
        engines: dict = {}
        idle = []
        if "local" in args.engines:
            engines["n_jobs (local processes)"] = None
        if "ray" in args.engines:
            import psutil

            started, failure = _start_ray(ray, most)
            if started is None:
                lines.append(f"Ray could not start on this machine in this run ({failure}); its rows are missing.\n")
            else:
                if "resources" in started:
                    engines["Ray"] = lambda: Ray(num_cpus=0, resources={"slot": 1})
                    lines.append(f"Ray's node did not start with num_cpus={most} ({failure}); it ran with "
                                 f"`ray.init(num_cpus=1, resources={{'slot': {most}}})`, each trial asking for one "
                                 "slot.\n")
                else:
                    engines["Ray"] = lambda: Ray(num_cpus=1)
                    lines.append(f"Ray: `ray.init(num_cpus={most}, include_dashboard=False)`"
                                 + (f", after failed tries ({failure})" if failure else "") + ".\n")
                ray_pids = [p.pid for p in psutil.Process().children()]
                idle.append(f"Ray's processes (GCS, raylet, {most} idle workers, agents): "
                            f"{_idle_cpu(ray_pids):.2f} cores")
        client, dask_processes = None, []
        if any(e.startswith("dask") for e in args.engines):
            # The scheduler and the workers in processes of their own, as on a real cluster (a LocalCluster keeps
            # its scheduler in this process, where it would compete with the chief's gRPC server for the GIL).
            client, dask_processes = _dask_cluster(most)
            idle.append(f"Dask's processes (scheduler, {most} nannies in one process, {most} workers): "
                        f"{_idle_cpu([p.pid for p in dask_processes]):.2f} cores")

            def dask(lowest_first: bool):
                def prepare():
                    client.run(_claims_from_lowest, lowest_first)
                    return client

                return prepare

            if "dask" in args.engines:
                engines["Dask"] = dask(False)
            if "dask-lowest-first" in args.engines:
                engines["Dask, claims from the lowest (before)"] = dask(True)
        if idle:
            lines.append("CPU used by the engines' idle processes over 10 s before the rows (no search running; on "
                         "2 cores): " + "; ".join(idle) + ".\n")
        load_start = os.getloadavg()
        try:
            lines += table + throughput_rows(engines, args.workers, args.trials_per_worker, root, counters)
        finally:
            if client is not None:
                client.close()
            for process in dask_processes:
                process.terminate()
                process.wait(timeout=60)
            ray.shutdown()
        load_end = os.getloadavg()
        lines += ["", f"Load average at the first row: {load_start[0]:.1f}; after the last: {load_end[0]:.1f}."]
        lines += ["", f"## Cost per trial through the gRPC proxy: a free objective, {args.proxy_trials} trials, "
                      "algo='random'", "", "| run | trials | ms per trial |", "|---|---:|---:|"]
        lines += proxy_cost(args.proxy_trials, root)
        lines += ["", "## reproducible=True against the asynchronous default", "",
                  "32 trials of 0.5-1.5 s (by configuration), 4 local workers, TPE, seed 0.", "",
                  "| mode | workers | trials | wall (s) | steady state (trials/s) | best loss |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += reproducible_cost(root)
    lines += ["", f"Load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
