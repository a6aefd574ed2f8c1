"""Throughput on cluster engines next to local workers, the cost per trial through the gRPC proxy, and the
wall-clock price of ``reproducible=True``.

Part 1: a search whose objective sleeps 1 s runs with 1, 2, 4, 8 and 16 workers as ``minimize(n_jobs=N)`` (local
worker processes), ``cluster=Ray(num_cpus=1)`` on a local Ray (``ray.init(num_cpus=16)``: sleeping trials need no
core) and ``cluster=client`` on a Dask scheduler and 16 one-thread workers started with ``dask scheduler`` and
``dask worker`` (processes of their own, as on a real cluster). Steady state and end
to end are measured as in ``parallel_throughput.py``. Ray's and Dask's worker processes stay up between rows (as on
a real cluster), local worker processes are started by each search.

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


def _search(objective, root: Path, **kwargs):
    started = time.perf_counter()
    result = minimize(objective, study_name=f"bench-{uuid.uuid4().hex[:8]}", directory=root, show_progress=False,
                      prune=None, keep_models=0, **kwargs)
    return result, time.perf_counter() - started


def throughput_rows(engines: dict, workers: list[int], per_worker: int, root: Path) -> list[str]:
    rows = []
    for n in workers:
        for name, cluster in engines.items():
            result, wall = _search(sleeping_objective, root, max_evals=n * per_worker, n_jobs=n,
                                   cluster=cluster() if callable(cluster) else cluster)
            trials = [t for t in result.study.get_trials() if t.state == TrialState.COMPLETE]
            assert len(trials) == n * per_worker
            steady = _steady_state(trials)
            rows.append(f"| {name} | {n} | {len(trials)} | {wall:.1f} | {steady:.2f} | {steady / n:.0%} | "
                        f"{len(trials) / wall:.2f} | {len(trials) / wall / n:.0%} |")
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
    parser.add_argument("--engines", nargs="+", default=["local", "ray", "dask"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cluster_throughput.md"))
    args = parser.parse_args()
    import ray

    from hyperbrace.launchers import Ray

    header = machine()
    lines = [
        "# Cluster engines: throughput, cost per trial through the gRPC proxy, price of reproducible=True",
        "",
        f"Machine: {header}. Ray {ray.__version__}, Dask distributed {__import__('distributed').__version__}. "
        "Produced by `python benchmarks/cluster_throughput.py`. The machine is shared with other sessions' work, "
        "so absolute figures move between runs: compare the rows of one run (ratios), not with other files.",
        "",
        f"## Throughput: 1 s sleeping trials, {args.trials_per_worker} trials per worker",
        "",
        "Ideal: N workers finish N trials per second. *Steady state*: trials finished while every worker runs; "
        "*end to end*: all trials over the whole call (including starting local worker processes; Ray's and "
        "Dask's workers are already up, as on a running cluster, but each search still loads its plan in them "
        "and starts the chief's gRPC server).",
        "",
        "| engine | workers | trials | wall (s) | steady state (trials/s) | vs ideal | end to end (trials/s) | vs ideal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        most = max(args.workers)
        engines: dict = {}
        if "local" in args.engines:
            engines["n_jobs (local processes)"] = None
        if "ray" in args.engines:
            for attempt in range(2):
                try:  # Ray gives its node 30 s to start (hard-coded): a loaded machine may need another try
                    ray.init(num_cpus=most, include_dashboard=False, log_to_driver=False)
                    engines["Ray"] = lambda: Ray(num_cpus=1)
                    break
                except Exception as exc:  # noqa: BLE001
                    ray.shutdown()
                    failure = f"{type(exc).__name__}: {exc}"
            else:
                lines.insert(-2, f"Ray could not start on this machine in this run ({failure}); its rows are missing.\n")
        client, dask_processes = None, []
        if "dask" in args.engines:
            # The scheduler and the workers in processes of their own, as on a real cluster (a LocalCluster keeps
            # its scheduler in this process, where it would compete with the chief's gRPC server for the GIL).
            client, dask_processes = _dask_cluster(most)
            engines["Dask"] = client
        try:
            lines += throughput_rows(engines, args.workers, args.trials_per_worker, root)
        finally:
            if client is not None:
                client.close()
            for process in dask_processes:
                process.terminate()
                process.wait(timeout=60)
            ray.shutdown()
        lines += ["", f"## Cost per trial through the gRPC proxy: a free objective, {args.proxy_trials} trials, "
                      "algo='random'", "", "| run | trials | ms per trial |", "|---|---:|---:|"]
        lines += proxy_cost(args.proxy_trials, root)
        lines += ["", "## reproducible=True against the asynchronous default", "",
                  "32 trials of 0.5-1.5 s (by configuration), 4 local workers, TPE, seed 0.", "",
                  "| mode | workers | trials | wall (s) | steady state (trials/s) | best loss |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += reproducible_cost(root)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
