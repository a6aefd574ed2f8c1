"""Trial throughput of parallel workers, and hyperbrace's own cost per trial next to a plain Optuna loop.

Part 1 (throughput): a search whose objective sleeps ``--trial-seconds`` (1 s) runs with 1, 2, 4, 8 and 16 workers
(``minimize(n_jobs=N)``; one worker is the ordinary in-process search) on the journal file and on PostgreSQL.
Sleeping trials use no CPU, so N workers should finish N trials a second; what they lose to hyperbrace and the
storage (asking under the budget lock, telling, recording attributes) shows as the gap to N×. Two figures:

* steady state: trials finished per second while all N workers are running (from the trials' own start and end
  times, between the last worker's first trial and the first worker's last trial end), against the ideal N/s;
* end to end: trials / wall time of the whole ``minimize`` call, which includes starting N Python processes.

Part 2 (overhead): a free objective (``return x * x``) for 100 and 1,000 trials in one process, as
``minimize(..., algo="random")`` and as a plain ``study.ask()`` / ``trial.suggest_float`` / ``study.tell`` loop
with Optuna's RandomSampler on the same kind of storage. The random sampler costs the same in both and almost
nothing, so the difference per trial is hyperbrace's own overhead (budget lock and count, dead-worker check,
log file, recorded values, progress bookkeeping).

Run (PostgreSQL comes from scripts/test-postgres.sh, which starts a private server)::

    bash scripts/test-postgres.sh run .venv/bin/python benchmarks/parallel_throughput.py

It writes ``benchmarks/results/parallel_throughput.md``. Without PostgreSQL the database rows are left out.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from hyperbrace import minimize, uniform  # noqa: E402,F401  (the objective's template names uniform)

optuna.logging.set_verbosity(optuna.logging.WARNING)

PAUSE = float(os.environ.get("HB_BENCH_PAUSE", "1.0"))

NOTES = """
## Notes

* The 1-worker rows run the search in the calling process; the others start worker processes. "End to end"
  includes starting them (a Python interpreter that imports hyperbrace and Optuna, loads the plan and opens the
  storage: under a second each, more on a loaded machine and more with a framework such as Keras to import),
  which a real search pays once; "steady state" is the rate a long search keeps.
* On PostgreSQL the database client and server share the same 2 cores with the workers, so 16 workers are
  limited by CPU (each trial costs tens of milliseconds of SQL work, on both sides), not by the budget lock.
* On the journal file, hyperbrace's own time per trial is mostly writing two more records than the plain loop
  (the worker that ran the trial, the real parameter values), each an fsync'd append, and the budget lock.
* Figures move by some percent between runs on this shared machine; compare rows of the same run.
"""


def sleeping_objective():
    x = {{uniform(-1, 1)}}
    time.sleep(PAUSE)
    return x * x


def free_objective():
    x = {{uniform(-1, 1)}}
    return x * x


def _storage(kind: str) -> tuple[str | None, str]:
    """(storage URL for minimize, a fresh study name)."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    if kind == "journal":
        return None, name
    return os.environ["HYPERBRACE_TEST_POSTGRES_URL"], name


def _steady_state(trials: list[optuna.trial.FrozenTrial]) -> float:
    """Trials finished per second while every worker was running (see the module's docstring)."""
    by_worker: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in trials:
        by_worker.setdefault(t.user_attrs.get("hb.worker", "?"), []).append(t)
    start = max(min(t.datetime_start for t in ts) for ts in by_worker.values()).timestamp()
    end = min(max(t.datetime_complete for t in ts) for ts in by_worker.values()).timestamp()
    if end <= start:
        return float("nan")
    # Each trial counts for the part of it that lies in the window (trials all take PAUSE seconds).
    busy = 0.0
    for t in trials:
        a, b = t.datetime_start.timestamp(), t.datetime_complete.timestamp()
        busy += max(0.0, min(b, end) - max(a, start)) / max(b - a, 1e-9)
    return busy / (end - start)


def throughput(kind: str, workers: int, trials_per_worker: int, root: Path) -> dict[str, float]:
    url, name = _storage(kind)
    max_evals = workers * trials_per_worker
    started = time.perf_counter()
    result = minimize(sleeping_objective, max_evals=max_evals, n_jobs=workers, storage=url, study_name=name,
                      directory=root, show_progress=False)
    wall = time.perf_counter() - started
    trials = [t for t in result.study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(trials) == max_evals, (len(trials), max_evals)
    return {"trials": max_evals, "wall": wall, "end_to_end": max_evals / wall, "steady": _steady_state(trials)}


def hyperbrace_loop(kind: str, n: int, root: Path) -> float:
    url, name = _storage(kind)
    started = time.perf_counter()
    minimize(free_objective, max_evals=n, algo="random", seed=0, storage=url, study_name=name, directory=root,
             show_progress=False)
    return (time.perf_counter() - started) / n


def optuna_loop(kind: str, n: int, root: Path) -> float:
    url, name = _storage(kind)
    if url is None:
        from optuna.storages.journal import JournalFileBackend

        (root / name).mkdir(parents=True)
        storage = optuna.storages.JournalStorage(JournalFileBackend(str(root / name / "study.journal")))
    else:
        storage = url
    started = time.perf_counter()
    study = optuna.create_study(storage=storage, study_name=name, sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(n):
        trial = study.ask()
        x = trial.suggest_float("x", -1, 1)
        study.tell(trial, x * x)
    return (time.perf_counter() - started) / n


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{cores} CPU cores ({cpu}), Linux {platform.release()}, Python {platform.python_version()}, "
            f"Optuna {optuna.__version__}; load average when it started: {load} (the machine is shared, so "
            "other work competed for the cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--trials-per-worker", type=int, default=10)
    parser.add_argument("--overhead-trials", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "parallel_throughput.md"))
    args = parser.parse_args()
    kinds = ["journal"] + (["postgresql"] if os.environ.get("HYPERBRACE_TEST_POSTGRES_URL") else [])
    lines = [
        "# Parallel throughput and per-trial overhead",
        "",
        f"Machine: {machine()}. PostgreSQL: a local server started by `scripts/test-postgres.sh` (loopback, "
        "fsync off). Produced by `bash scripts/test-postgres.sh run .venv/bin/python "
        "benchmarks/parallel_throughput.py`.",
        "",
        f"## Throughput: {PAUSE:g} s sleeping trials, {args.trials_per_worker} trials per worker",
        "",
        "Ideal: N workers finish N trials per second. *Steady state* counts trials finished while all workers run; "
        "*end to end* divides all trials by the whole call's wall time, including starting the worker processes "
        f"(with only {args.trials_per_worker} trials per worker, start-up weighs heavily there; it is paid once "
        "per search). One worker is the ordinary in-process search.",
        "",
        "| storage | workers | trials | wall (s) | steady state (trials/s) | vs ideal | end to end (trials/s) | vs ideal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for kind in kinds:
            for n in args.workers:
                r = throughput(kind, n, args.trials_per_worker, root)
                ideal = n / PAUSE
                row = (f"| {kind} | {n} | {r['trials']} | {r['wall']:.1f} | {r['steady']:.2f} | "
                       f"{r['steady'] / ideal:.0%} | {r['end_to_end']:.2f} | {r['end_to_end'] / ideal:.0%} |")
                print(row, flush=True)
                lines.append(row)
        lines += [
            "",
            "## Overhead per trial, one process, a free objective",
            "",
            "Both loops use Optuna's RandomSampler (its cost is the same in both and near zero), so the difference "
            "is hyperbrace's own work per trial.",
            "",
            "| storage | trials | plain Optuna loop (ms/trial) | hyperbrace (ms/trial) | hyperbrace's own (ms/trial) |",
            "|---|---:|---:|---:|---:|",
        ]
        for kind in kinds:
            for n in args.overhead_trials:
                plain = optuna_loop(kind, n, root) * 1000
                ours = hyperbrace_loop(kind, n, root) * 1000
                row = f"| {kind} | {n} | {plain:.1f} | {ours:.1f} | {ours - plain:.1f} |"
                print(row, flush=True)
                lines.append(row)
    lines.append(NOTES)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
