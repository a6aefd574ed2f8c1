"""Memory of N local workers for a data set of a given size: memory-mapped (the default) against one copy each.

``data()`` returns one float32 array of ``--megabytes`` MB. Each trial reads all of it (so every page is in
memory) and holds on for a moment, while this process samples every worker's ``/proc/PID/smaps_rollup`` at once
and keeps the moment they took the most:

* RSS counts every page the process touches, shared ones included (so N workers mapping one file each show the
  whole file);
* PSS divides each shared page among the processes sharing it: the sum of PSS over the workers is what they take
  from the machine together;
* private is what only that worker holds.

"one copy each" is what you get when ``data()`` returns something hyperbrace cannot map (the workers then call
``data()`` themselves); the benchmark forces it by turning the sharing off in this process.

    .venv/bin/python benchmarks/parallel_memory.py --megabytes 256 --workers 4

Prints a markdown table (docs/parallel.md quotes it).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import optuna  # noqa: E402

import hyperbrace.executor  # noqa: E402
from hyperbrace import minimize, uniform  # noqa: E402,F401

optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_data(megabytes):
    return (np.arange(megabytes * 2**20 // 4, dtype=np.float32),)


def measure(x):
    scale = {{uniform(0, 1)}}
    float(x.sum(dtype=np.float64))  # touch every page
    time.sleep(1.5)  # hold it while the sampler looks at every worker
    return scale


def _memory(pid: int) -> dict[str, float] | None:
    """Rss, Pss and private memory of a process, in MB (from /proc/PID/smaps_rollup)."""
    fields: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                    fields[key] = int(rest.split()[0]) / 1024
    except (OSError, ValueError):
        return None
    if "Rss" not in fields:
        return None
    return {"rss": fields["Rss"], "pss": fields["Pss"], "private": fields["Private_Clean"] + fields["Private_Dirty"]}


class Sampler(threading.Thread):
    """Samples this process's children (the workers) together, keeping the moment they took the most memory."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.peak: list[dict[str, float]] = []

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.wait(0.2):
            try:
                children = Path(f"/proc/{me}/task/{me}/children").read_text().split()
            except OSError:
                continue
            snapshot = [m for m in (_memory(int(pid)) for pid in children) if m is not None]
            if sum(m["pss"] for m in snapshot) > sum(m["pss"] for m in self.peak):
                self.peak = snapshot


def run(megabytes: int, workers: int, shared: bool) -> dict[str, float]:
    original = hyperbrace.executor.share_data
    if not shared:
        hyperbrace.executor.share_data = lambda plan, directory: plan
    sampler = Sampler()
    sampler.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            minimize(measure, make_data, data_args=(megabytes,), max_evals=2 * workers, n_jobs=workers,
                     directory=tmp, show_progress=False)
    finally:
        hyperbrace.executor.share_data = original
        sampler.stop.set()
        sampler.join()
    peak = sampler.peak
    return {
        "workers": len(peak),
        "rss": max(m["rss"] for m in peak),
        "private": max(m["private"] for m in peak),
        "pss_sum": sum(m["pss"] for m in peak),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    print("| data | workers | arrays | RSS per worker (MB) | private per worker (MB) | all workers together, PSS (MB) |")
    print("|---:|---:|---|---:|---:|---:|")
    for n in args.workers:
        for shared in (True, False):
            r = run(args.megabytes, n, shared)
            how = "memory-mapped (default)" if shared else "one copy each"
            print(f"| {args.megabytes} MB | {r['workers']} | {how} | {r['rss']:.0f} | {r['private']:.0f} | "
                  f"{r['pss_sum']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
