"""Memory and speed of a long one-process Keras search on each backend (TensorFlow, JAX, PyTorch).

Runs ``benchmarks/keras_memory.py``'s search (small Conv2D model, 2 epochs on 1,400 digits, best 3 models saved) once
per backend, each in a fresh process with ``KERAS_BACKEND`` set, with hyperbrace as shipped: ``n_jobs=1``, so on
TensorFlow the trials run in one worker process that is replaced once it grew past the bound
(``HYPERBRACE_WORKER_MAX_GROWTH_MB``, hyperbrace/recycle.py). On TensorFlow it runs a second time with recycling
off (``HYPERBRACE_WORKER_MAX_GROWTH_MB=0``: every trial in the search's own process, as before) to show the leak.
Each trial records the resident memory (VmRSS) of the process that runs it when it starts, and its duration.

    python benchmarks/keras_memory_backends.py --trials 60 --bound 100   # writes results/keras_memory_backends.md
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from keras_memory import measure  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "keras_memory_backends.md"


def growth_per_trial(start: list[float], first: int = 10) -> float:
    """MiB a trial from trial ``first`` on, in the process that ran them (a recycled worker restarts the count)."""
    first = min(first, len(start)) - 1
    span = len(start) - 1 - first
    return (start[-1] - start[first]) / span if span > 0 else 0.0


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def row(label: str, figures: dict) -> str:
    start, pids = figures["start"], figures["pids"]
    checkpoints = [k for k in (1, 10, 25, 50, 100, 200) if k <= len(start)]
    cells = " / ".join(f"{start[k - 1]:.0f}" for k in checkpoints)
    processes = len(dict.fromkeys(pids))
    single = processes == 1
    growth = f"{growth_per_trial(start):+.2f}" if single else "(recycled)"
    return (f"| {label} | {cells} | {max(start):.0f} | {growth} | {processes} | "
            f"{median(figures['seconds']):.2f} s | {figures['wall']:.0f} s |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--bound", type=float, default=256.0, help="HYPERBRACE_WORKER_MAX_GROWTH_MB for the runs")
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--epochs", type=int, default=2, help="epochs a trial (1 halves the run; memory is per model)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    runs = []
    for backend in args.backends.split(","):
        variants = [("hyperbrace", {"HYPERBRACE_WORKER_MAX_GROWTH_MB": str(args.bound)})]
        if backend == "tensorflow":
            variants.append(("one process, recycling off", {"HYPERBRACE_WORKER_MAX_GROWTH_MB": "0"}))
        for label, env in variants:
            began = time.perf_counter()
            figures = measure(args.trials, True, env={"KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
                                                           "HB_BENCH_EPOCHS": str(args.epochs), **env})
            figures["wall"] = time.perf_counter() - began
            runs.append((f"{backend}: {label}", figures))
            print(row(runs[-1][0], figures), flush=True)
    load = os.getloadavg()
    versions = subprocess.run(
        [sys.executable, "-c", "import keras, tensorflow, jax, torch; print(f'Keras {keras.__version__}, TensorFlow "
         "{tensorflow.__version__}, JAX {jax.__version__}, PyTorch {torch.__version__}')"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    ).stdout.strip()
    checkpoints = [k for k in (1, 10, 25, 50, 100, 200) if k <= args.trials]
    report = "\n".join([
        f"# Memory and speed of a {args.trials}-trial Keras search, per backend",
        "",
        f"`python benchmarks/keras_memory_backends.py --trials {args.trials} --bound {args.bound:g} --epochs "
        f"{args.epochs}`: the search of `benchmarks/keras_memory.py` (Conv2D 16, Dense 32-128, {args.epochs} epoch(s) "
        "on 1,400 digits, best 3 models saved, "
        "`n_jobs=1`, `prune=None`) on each Keras backend, each in a fresh process. Memory is the resident size "
        "(VmRSS, MiB) of the process running the trial, read when each trial starts. With hyperbrace as shipped, "
        "TensorFlow's trials run in one worker process that is replaced once it grew by more than "
        f"`HYPERBRACE_WORKER_MAX_GROWTH_MB` ({args.bound:g} MiB here, to show it within {args.trials} trials; the "
        "default is 256) since its first trial.",
        "",
        f"| run | MiB at trial {' / '.join(map(str, checkpoints))} | max MiB | MiB/trial from trial 10 "
        "(one process) | processes | median trial | whole search |",
        "|---|---|---|---|---|---|---|",
        *(row(label, figures) for label, figures in runs),
        "",
        "Per trial (MiB at start; a drop is a fresh worker):",
        "",
        "```",
        *(f"{label}: " + " ".join(f"{v:.0f}" for v in figures["start"]) for label, figures in runs),
        "```",
        "",
        f"Measured with {versions}, Python {platform.python_version()}, {platform.machine()} Linux, "
        f"{os.cpu_count()} CPUs, **shared with other jobs**: load average {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} (1/5/15 min) at the end, so durations are slow and noisy; compare them only within this "
        "table, and the memory figures, which load does not change.",
        "",
    ])
    Path(args.out).write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
