"""Which Keras backend is fastest, on an idle machine and on a loaded one? The Gala ``--quick`` demo per backend.

Runs ``examples/gala_cnn.py --quick`` (``make demo``: 6 trials x 6 epochs of the article's CNN on 600 stand-in
images) once per backend (TensorFlow, JAX, PyTorch), each in a fresh process with ``KERAS_BACKEND`` set and a fresh
run directory (so nothing resumes), in two modes: "idle" (nothing else of this script running) and "busy" (one
CPU-bound process per core beside it: another job filling the machine). Backends and modes are interleaved within
each repeat, so a drift in the machine's own load hits every backend alike. The README's backend advice comes from
this table (its issue: the loaded and the idle order differ).

Run it with the CPU to itself (it is a timing)::

    flock /work/cpu.lock python benchmarks/keras_backend_speed.py --repeats 2   # writes results/keras_backend_speed.md
    python benchmarks/keras_backend_speed.py --repeats 1 --out - -- --images 60 --max-evals 1 --epochs 1  # smoke

Arguments after ``--`` go to ``gala_cnn.py`` (a smaller run for a smoke test).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "keras_backend_speed.md"
BACKENDS = ("torch", "tensorflow", "jax")


def burn(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def one_run(backend: str, data: Path, extra: list[str]) -> float:
    """Seconds of one ``gala_cnn.py --quick`` run on ``backend``, in a fresh process and run directory."""
    with tempfile.TemporaryDirectory() as runs:
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        began = time.perf_counter()
        done = subprocess.run([sys.executable, str(ROOT / "examples" / "gala_cnn.py"), "--data", str(data), "--quick",
                               "--runs", runs, *extra], capture_output=True, text=True, env=env, cwd=ROOT)
        seconds = time.perf_counter() - began
    if done.returncode:
        raise RuntimeError(f"gala_cnn.py on {backend} failed:\n{done.stderr[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--modes", default="idle,busy")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--out", default=str(RESULTS), help="markdown file ('-': print only)")
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    modes, backends = args.modes.split(","), args.backends.split(",")
    times: dict[tuple[str, str], list[float]] = {(m, b): [] for m in modes for b in backends}
    loads: dict[tuple[str, str], list[float]] = {(m, b): [] for m in modes for b in backends}
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "gala_data"
        subprocess.run([sys.executable, str(ROOT / "examples" / "make_gala_standin.py"), "--out", str(data)],
                       check=True, capture_output=True)
        for repeat in range(args.repeats):
            for mode in modes:
                for backend in backends[repeat % len(backends):] + backends[:repeat % len(backends)]:
                    burners = []
                    if mode == "busy":
                        burners = [multiprocessing.Process(target=burn, args=(time.time() + 7200,), daemon=True)
                                   for _ in range(cores)]
                        for process in burners:
                            process.start()
                        time.sleep(2)
                    loads[mode, backend].append(os.getloadavg()[0])
                    try:
                        times[mode, backend].append(one_run(backend, data, extra))
                    finally:
                        for process in burners:
                            process.terminate()
                            process.join()
                    print(f"{mode} {backend} {times[mode, backend][-1]:.1f} s", flush=True)
    versions = subprocess.run(
        [sys.executable, "-c", "import keras, tensorflow, jax, torch; print(f'Keras {keras.__version__}, TensorFlow "
         "{tensorflow.__version__}, JAX {jax.__version__}, PyTorch {torch.__version__}')"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    ).stdout.strip()
    command = "python benchmarks/keras_backend_speed.py " + " ".join(argv) + (" -- " + " ".join(extra) if extra else "")
    lines = [
        "# Keras backends: the Gala `--quick` demo, idle and loaded",
        "",
        f"`{command.strip()}`: `examples/gala_cnn.py --quick` (6 trials x 6 epochs on 600 stand-in images, "
        "`n_jobs=1`; arguments after `--` change that) per backend, each in a fresh process and run directory; "
        "busy = one CPU-bound process per core "
        f"beside it. Seconds for the whole run (imports included), median of {args.repeats} (each run in brackets), "
        "and the ratio to the fastest backend in the same mode.",
        "",
        "| mode | " + " | ".join(backends) + " |",
        "|---|" + "---|" * len(backends),
    ]
    for mode in modes:
        medians = {b: statistics.median(times[mode, b]) for b in backends}
        fastest = min(medians.values())
        lines.append(f"| {mode} | " + " | ".join(
            f"{medians[b]:.0f} s (x{medians[b] / fastest:.2f}) [{', '.join(f'{t:.0f}' for t in times[mode, b])}]"
            for b in backends) + " |")
    lines += [
        "",
        f"Measured with {versions}, Python {platform.python_version()}, {platform.machine()} Linux, {cores} cores; "
        "1-minute load average before each run: " + "; ".join(
            f"{m} {b} {', '.join(f'{x:.1f}' for x in loads[m, b])}" for m in modes for b in backends) + ".",
        "",
    ]
    text = "\n".join(lines)
    if args.out != "-":
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
