"""Memory over a long Keras search on each backend (TensorFlow, JAX, PyTorch): does it stay within a fixed bound?

Runs ``benchmarks/keras_memory.py``'s search (small Conv2D model, best 3 models saved, ``prune=None``) once per
backend and variant, each in a fresh process with ``KERAS_BACKEND`` set, with hyperbrace as shipped:

* ``n_jobs=1``: on TensorFlow and JAX the trials run in one worker process that is replaced once it grew past the
  bound (``HYPERBRACE_WORKER_MAX_GROWTH_MB``, hyperbrace/recycle.py); on PyTorch in the search's own process.
* ``n_jobs=2``: two worker processes, each replaced once it grew past the bound (on every backend).
* ``n_jobs=1, recycling off`` (only when ``--variants`` names it; ``HYPERBRACE_WORKER_MAX_GROWTH_MB=0``): every
  trial in the search's own process, to show the growth that recycling contains.

Each trial records the resident memory (VmRSS) of the process that runs it, when it starts and when it ends, and
that process's id: a new id in a run is a fresh worker (failed trials are counted in the table: a worker that died
would show as one). Runs go ``--parallel`` at a time (memory is per process; durations then are not comparable).

    python benchmarks/keras_memory_backends.py --trials 200      # writes results/keras_memory_backends.md (+ .json)
    python benchmarks/keras_memory_backends.py --trials 10 --out -   # a smoke run, printed

The table is rewritten after each run, so a run stopped early leaves the rows it finished.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from keras_memory import measure  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "keras_memory_backends.md"
#: (label, n_jobs, recycling on); "recycling off" runs only when --variants names it
VARIANTS = [("n_jobs=1", 1, True), ("n_jobs=2", 2, True), ("n_jobs=1, recycling off", 1, False)]
DEFAULT_VARIANTS = ("n_jobs=1", "n_jobs=2")


def processes(figures: dict) -> dict[int, list[int]]:
    """Process id -> the indexes of the trials it ran, in trial order."""
    ran: dict[int, list[int]] = {}
    for index, pid in enumerate(figures["pids"]):
        ran.setdefault(pid, []).append(index)
    return ran


def growth_per_trial(figures: dict, skip: int = 2) -> float | None:
    """MiB a trial within one process, from its ``skip + 1``-th trial on (its first trials are warm-up: imports,
    first compilation, first model saved), over all processes of the run that ran more than ``skip + 2`` trials."""
    start = figures["start"]
    added = span = 0.0
    for indexes in processes(figures).values():
        if len(indexes) > skip + 2:
            added += start[indexes[-1]] - start[indexes[skip]]
            span += len(indexes) - 1 - skip
    return added / span if span else None


def above_baseline(figures: dict) -> float:
    """The most a process's memory rose above its size after its first trial (what recycling bounds), MiB."""
    start, end = figures["start"], figures["end"]
    worst = 0.0
    for indexes in processes(figures).values():
        if len(indexes) < 2:
            continue
        baseline = start[indexes[1]]  # its size after its first trial and the clean-up: MemoryWatch's baseline
        worst = max(worst, max(max(start[i], end[i]) for i in indexes[1:]) - baseline)
    return worst


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def row(label: str, figures: dict | None, jobs: int) -> str:
    if figures is None:
        return f"| {label} | not run (time) | | | | | | | | |"
    if "error" in figures:
        return f"| {label} | failed: {figures['error'][-200:]!r} | | | | | | | | |"
    start, end = figures["start"], figures["end"]
    ran = processes(figures)
    in_search = figures["search_pid"] in ran
    recycled = len(ran) - (1 if in_search else jobs)
    growth = growth_per_trial(figures)
    where = "search process" if in_search else f"{len(ran)} workers in turn" if jobs == 1 else f"{len(ran)} workers"
    trials = f"{len(start)}" + (f" (+{len(figures['failed'])} failed)" if figures["failed"] else "")
    if figures.get("cut_short"):  # stopped by a deadline; figures read back from its journal (trials' attributes)
        trials += " (stopped at the deadline)"
    search = "n/a" if figures["after_search"] is None else f"{figures['after_search']:.0f}"
    wall = "n/a" if figures["wall"] is None else f"{figures['wall']:.0f} s"
    return (f"| {label} | {trials} | {where} | {start[0]:.0f} / {start[-1]:.0f} / {max(start + end):.0f} | "
            f"{'n/a' if growth is None else f'{growth:+.2f}'} | {above_baseline(figures):+.0f} | "
            f"{recycled if figures['recycling'] else 'off'} | {search} | "
            f"{median(figures['seconds']):.2f} s | {wall} |")


def series(label: str, figures: dict | None) -> list[str]:
    """Per process: its trials' memory at start (MiB)."""
    if figures is None or "error" in figures:
        return []
    lines = [f"{label}:"]
    for pid, indexes in processes(figures).items():
        where = "search process" if pid == figures["search_pid"] else "worker"
        lines.append(f"  {where} {pid}, trials {indexes[0]}-{indexes[-1]} ({len(indexes)}): "
                     + " ".join(f"{figures['start'][i]:.0f}" for i in indexes))
    return lines


def run(backend: str, jobs: int, recycling: bool, args: argparse.Namespace) -> dict:
    env = {"KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "HB_BENCH_EPOCHS": str(args.epochs),
           "HB_BENCH_TRAIN": str(args.train), "HB_BENCH_VAL": str(args.val),
           "HYPERBRACE_WORKER_MAX_GROWTH_MB": str(args.bound) if recycling else "0"}
    began = time.perf_counter()
    try:
        figures = measure(args.trials, True, env=env, jobs=jobs)
    except RuntimeError as exc:  # one run failing leaves the others' rows
        return {"error": str(exc)}
    figures.update(wall=time.perf_counter() - began, recycling=recycling)
    return figures


def report(args: argparse.Namespace, runs: list[tuple[str, int, dict | None]], began: float,
           load_before: tuple[float, ...], versions: str) -> str:
    load = os.getloadavg()
    command = (f"python benchmarks/keras_memory_backends.py --trials {args.trials} --bound {args.bound:g} "
               f"--epochs {args.epochs} --train {args.train} --val {args.val} --parallel {args.parallel}"
               + (f" --backends {args.backends}" if args.backends != "tensorflow,jax,torch" else "")
               + (f" --variants '{args.variants}'" if args.variants else ""))
    return "\n".join([
        f"# Memory over a {args.trials}-trial Keras search, per backend",
        "",
        f"`{command}`: the search of `benchmarks/keras_memory.py` (Conv2D 16, Dense 32-128, Adam, {args.epochs} "
        f"epoch(s) on {args.train} digits, validation on {args.val}, batches of 64, the best 3 models saved, "
        "`prune=None`) on each Keras backend, each run in a fresh process with `KERAS_BACKEND` set. Memory is the "
        "resident size (VmRSS, MiB) of the process running the trial (the search's own process, or a worker), read "
        "when each trial starts and ends. Recycling: a worker that grew by more than "
        f"`HYPERBRACE_WORKER_MAX_GROWTH_MB` ({args.bound:g} MiB{', the default' if args.bound == 256 else '; the default is 256'}) since its first trial leaves "
        "between two trials and a fresh one takes its place; on TensorFlow and JAX even an `n_jobs=1` search runs "
        "its trials in such a worker, on PyTorch in the search's own process. \"recycling off\" is "
        "`HYPERBRACE_WORKER_MAX_GROWTH_MB=0`. A new process id among a run's trials is a fresh worker (a failed "
        "trial, counted in the trials column, would show a worker that died instead).",
        "",
        "| run | trials | trials ran in | MiB first / last / max | MiB a trial within one process (from its 3rd "
        "trial) | most MiB above a process's size after its first trial | fresh workers (recycled) | search "
        "process at the end, MiB | median trial | whole run |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(row(label, figures, jobs) for label, jobs, figures in runs),
        "",
        "Per process (MiB when each of its trials started; with `n_jobs=2` the two workers' trials interleave):",
        "",
        "```",
        *(line for label, _, figures in runs for line in series(label, figures)),
        "```",
        "",
        f"Measured with {versions}, Python {platform.python_version()}, {platform.machine()} Linux, "
        f"{os.cpu_count()} CPUs, under `flock /work/cpu.lock nice -n 5` (no other benchmark at the same time; "
        f"other sessions' tests did run), {args.parallel} run(s) at a time: load average {load_before[0]:.1f} / "
        f"{load_before[1]:.1f} / {load_before[2]:.1f} (1/5/15 min) at the start, {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} when this was written, {(time.perf_counter() - began) / 60:.0f} minutes after the start. "
        "Durations are noisy under that load and with runs side by side; the memory figures are what this table "
        "is for (load does not change them).",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--bound", type=float, default=256.0, help="HYPERBRACE_WORKER_MAX_GROWTH_MB (default 256)")
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--variants", default="", help=f"labels, comma-separated (default: {', '.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--epochs", type=int, default=1, help="epochs a trial")
    parser.add_argument("--train", type=int, default=1344, help="training images (of 1,400; whole batches of 64)")
    parser.add_argument("--val", type=int, default=384, help="validation images (of 397)")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (memory is per process)")
    parser.add_argument("--out", default=str(RESULTS), help="markdown file to write after each run ('-': print)")
    args = parser.parse_args(argv)
    labels = [v.strip() for v in args.variants.split(",") if v.strip()] or list(DEFAULT_VARIANTS)
    began, load_before = time.perf_counter(), os.getloadavg()
    versions = subprocess.run(
        [sys.executable, "-c", "import keras, tensorflow, jax, torch; print(f'Keras {keras.__version__}, TensorFlow "
         "{tensorflow.__version__}, JAX {jax.__version__}, PyTorch {torch.__version__}')"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    ).stdout.strip()
    # Table order: by variant, then backend. Runs start by backend in the order given (the slowest, JAX, first
    # in the full run keeps the tail short).
    planned = [(f"{backend}, {label}", backend, jobs, recycling)
               for label, jobs, recycling in VARIANTS if label in labels for backend in args.backends.split(",")]
    order = sorted(planned, key=lambda entry: args.backends.split(",").index(entry[1]))
    results: dict[str, dict | None] = {name: None for name, *_ in planned}
    lock = threading.Lock()

    def write() -> None:
        text = report(args, [(name, jobs, results[name]) for name, _, jobs, _ in planned], began, load_before,
                      versions)
        if args.out == "-":
            return
        Path(args.out).write_text(text)
        # The raw figures, for another table later.
        Path(args.out).with_suffix(".json").write_text(json.dumps(results))

    def one(name: str, backend: str, jobs: int, recycling: bool) -> None:
        figures = run(backend, jobs, recycling, args)
        with lock:
            results[name] = figures
            print(row(name, figures, jobs), flush=True)
            write()

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        for future in [pool.submit(one, *entry) for entry in order]:
            future.result()
    print(report(args, [(name, jobs, results[name]) for name, _, jobs, _ in planned], began, load_before, versions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
