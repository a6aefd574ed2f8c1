"""Does memory grow over a long Keras search? 50 trials of a small Keras model (PyTorch backend) in ONE process.

Each trial reads the process' resident memory (VmRSS in /proc/self/status) when it starts, i.e. after the
previous trial and hyperbrace's clean-up between trials (``hyperbrace/integrations/keras.py``: ``after_trial``),
and returns it as an extra key, so the figures come back in ``result.trials``. The search runs twice, each in a
fresh process: as hyperbrace runs it, and with the clean-up hook switched off, to show what the hook does.

Run (about two minutes on a 2-core CPU)::

    KERAS_BACKEND=torch python benchmarks/keras_memory.py             # writes benchmarks/results/keras_memory.md
    KERAS_BACKEND=torch python benchmarks/keras_memory.py --trials 10 --out -   # a quick look, printed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras reads it on first import; torch is what is installed here

from hyperbrace import choice, loguniform, uniform  # noqa: E402,F401  (used by the templates)

RESULTS = Path(__file__).parent / "results" / "keras_memory.md"
CHECKPOINTS = (1, 10, 25, 50)  # trials whose figures go in the table


def rss_mb() -> float:
    """This process' resident set size in MiB, from /proc/self/status (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (this benchmark needs Linux)")


def data():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    # keras_memory_backends.py --train/--val: whole batches of 64 (a last, smaller batch costs JAX a second compile)
    train = int(os.environ.get("HB_BENCH_TRAIN", "1400"))
    val = 1400 + int(os.environ.get("HB_BENCH_VAL", "397"))
    return x[:train], digits.target[:train], x[1400:val], digits.target[1400:val]


def create_model(x_train, y_train, x_val, y_val):
    rss_at_start = rss_mb()  # what the previous trials left behind
    model = keras.Sequential([
        keras.Input(shape=(8, 8, 1)),
        keras.layers.Conv2D(16, (3, 3), activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense({{choice([32, 64, 128])}}, activation="relu"),
        keras.layers.Dropout({{uniform(0, 0.5)}}),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(
        optimizer=keras.optimizers.Adam({{loguniform(1e-4, 1e-2)}}),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    epochs = int(os.environ.get("HB_BENCH_EPOCHS", "2"))  # keras_memory_backends.py --epochs
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=64, validation_data=(x_val, y_val), verbose=0)
    accuracy = max(history.history["val_accuracy"])
    return {"loss": -accuracy, "model": model, "rss_start_mb": rss_at_start, "rss_end_mb": rss_mb(), "pid": os.getpid()}


def run_search(trials: int, clean_up: bool, jobs: int = 1) -> dict:
    """One search in this process (its trials in ``jobs`` workers when above 1); returns the per-trial figures."""
    global keras
    import keras

    import hyperbrace
    from hyperbrace.integrations import keras as keras_integration

    if not clean_up:
        keras_integration.after_trial = lambda context: None
    with tempfile.TemporaryDirectory() as runs:
        result = hyperbrace.minimize(
            # prune=None: every trial trains to the end and reports its memory (a pruned trial returns nothing).
            create_model, data, max_evals=trials, seed=0, directory=runs, show_progress=False, prune=None,
            n_jobs=jobs,
        )
        records = sorted(result.trials, key=lambda t: t.number)
        failed = [(t.number, str(t.error)) for t in records if t.state != "COMPLETE"]
        records = [t for t in records if t.state == "COMPLETE"]
        return {
            "failed": failed,
            "start": [t.extras["rss_start_mb"] for t in records],
            "end": [t.extras["rss_end_mb"] for t in records],
            "pids": [t.extras["pid"] for t in records],
            "seconds": [t.duration for t in records],
            "after_search": rss_mb(),
            "search_pid": os.getpid(),
            "backend": keras.backend.backend(),
        }


def measure(trials: int, clean_up: bool, env: dict | None = None, jobs: int = 1) -> dict:
    """Run :func:`run_search` in a fresh Python process, so that the two variants don't share memory."""
    command = [sys.executable, __file__, "--child", "--trials", str(trials), "--jobs", str(jobs)]
    command += [] if clean_up else ["--no-clean-up"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(figures: dict, trials: int) -> str:
    """Markdown rows: RSS when trial k starts (after k-1 trials), at checkpoints, and the growth."""
    checkpoints = [k for k in CHECKPOINTS if k <= trials] or [trials]
    rows = ["| | " + " | ".join(f"trial {k}" for k in checkpoints) + " | after the search | growth, trial "
            f"{checkpoints[0]} to the end |",
            "|---|" + "---|" * (len(checkpoints) + 2)]
    for label, key in (("hyperbrace (clear_session between trials)", "clean"), ("clean-up hook off", "raw")):
        start = figures[key]["start"]
        end = figures[key]["after_search"]
        cells = [f"{start[k - 1]:.0f} MiB" for k in checkpoints]
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {end:.0f} MiB | {end - start[checkpoints[0] - 1]:+.0f} MiB |")
    return "\n".join(rows)


def per_trial_growth(figures: dict, first: int = 10) -> float:
    """Average MiB added per trial from trial ``first`` on (after warm-up: imports, first compilation)."""
    start = figures["start"]
    first = min(first, len(start)) - 1
    span = len(start) - 1 - first
    return (start[-1] - start[first]) / span if span > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--out", default=str(RESULTS), help="markdown file to write ('-': print it)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-clean-up", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_search(args.trials, clean_up=not args.no_clean_up, jobs=args.jobs)))
        return 0

    figures = {"clean": measure(args.trials, True), "raw": measure(args.trials, False)}
    for variant in figures.values():
        if variant["failed"]:
            number, error = variant["failed"][0]
            raise RuntimeError(f"trial {number} did not complete: {error}")
    import keras
    import torch

    report = "\n".join([
        f"# Memory over a {args.trials}-trial Keras search, one process",
        "",
        f"`benchmarks/keras_memory.py`: {args.trials} trials of a small Keras model (Conv2D 16, Dense 32-128, "
        "2 epochs on 1,400 digits, the best 3 models saved) in one process. Resident memory (VmRSS) when each trial "
        "starts, i.e. after the previous trials and the clean-up between them.",
        "",
        table(figures, args.trials),
        "",
        f"Average growth per trial from trial 10 on: {per_trial_growth(figures['clean']):.2f} MiB with hyperbrace's "
        f"clean-up, {per_trial_growth(figures['raw']):.2f} MiB without it. The rise over the first trial is "
        "warm-up (Keras and PyTorch loading their kernels, the first model built and saved), paid once; what "
        "matters over a long search is the growth per trial after it.",
        "",
        f"Measured with Keras {keras.__version__} (backend {keras.backend.backend()}), PyTorch {torch.__version__}, "
        f"Python {platform.python_version()}, {platform.machine()} Linux, {os.cpu_count()} CPUs.",
        "",
        "Per trial (MiB at start):",
        "",
        "```",
        "clean-up on : " + " ".join(f"{v:.0f}" for v in figures["clean"]["start"]),
        "clean-up off: " + " ".join(f"{v:.0f}" for v in figures["raw"]["start"]),
        "```",
        "",
    ])
    if args.out == "-":
        print(report)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report)
        print(report)
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
