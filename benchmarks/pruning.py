"""Benchmark: how much training pruning saves in a TPE search, and what it costs in accuracy.

The task is real and runs offline: a small Keras MLP on scikit-learn's digits (1,000 training and 797 validation
images), searched over width, dropout, optimizer and learning rate: a space with many configurations that are
visibly bad after an epoch or two (SGD at 1e-4, Adam at 0.5), as in real searches.

For every repeat (a TPE seed):

1. a full-training search: ``max_evals=TRIALS`` trials of ``EPOCHS`` epochs each, ``prune=None``. Its best
   validation accuracy is the target, and its wall time is the wall-time budget;
2. one search per pruner, with the same seed, the same model function and the default ``prune_on="val_loss"``,
   with ``max_evals=3 * TRIALS`` (pruned trials are short, so it can afford more of them).

Measured per pruned search: the epochs (and seconds) it trained until a completed trial first reached the target
accuracy, against the full search's epochs (and seconds) to reach it; its best accuracy within the first
``TRIALS`` trials (the same ``max_evals``), within the epochs the full search trained (the same compute), and
within the full search's wall time.

Run (about 15 minutes on 2 CPU cores)::

    KERAS_BACKEND=torch .venv/bin/python benchmarks/pruning.py            # writes benchmarks/results/pruning.md
    KERAS_BACKEND=torch .venv/bin/python benchmarks/pruning.py --repeats 1 --trials 10 --epochs 5   # smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import hyperbrace  # noqa: E402
from hyperbrace import STATUS_OK, choice, loguniform, minimize, uniform  # noqa: E402,F401

EPOCHS = 15  # overwritten from the command line before any search runs


def data():
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = (x[order] / 16.0).astype("float32"), y[order]
    return x[:1000], y[:1000], x[1000:], y[1000:]


def create_model(x_train, y_train, x_val, y_val):
    # Same weights for the same trial number in every search, so searches differ only by what they choose.
    keras.utils.set_random_seed(hyperbrace.current_trial().number)
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense({{choice([16, 32, 64, 128])}}, activation="relu"),
        keras.layers.Dropout({{uniform(0, 0.5)}}),
        keras.layers.Dense(10, activation="softmax"),
    ])
    optimizers = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}
    optimizer = optimizers[{{choice(["sgd", "adam", "rmsprop"])}}]
    model.compile(optimizer=optimizer(learning_rate={{loguniform(1e-4, 1.0)}}),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=EPOCHS, batch_size=64, verbose=0)
    accuracy = history.history["val_accuracy"][-1]
    return {"loss": -accuracy, "status": STATUS_OK, "epochs_run": len(history.history["loss"])}


@dataclass
class Search:
    """One search's trials in the order they ran: (state, accuracy or None, epochs, seconds since start at end)."""

    label: str
    trials: list[tuple[str, float | None, int, float]]
    wall: float

    @classmethod
    def from_result(cls, label: str, result: hyperbrace.SearchResult, wall: float) -> Search:
        frozen = sorted(result.study.get_trials(deepcopy=False), key=lambda t: t.number)
        start = min(t.datetime_start for t in frozen)
        rows = []
        for t in frozen:
            if t.state == TrialState.COMPLETE:
                epochs = int(t.user_attrs["epochs_run"])
                accuracy = -t.value
            else:
                epochs = int(t.user_attrs.get("hb.steps", len(t.intermediate_values)))
                accuracy = None
            rows.append((t.state.name, accuracy, epochs, (t.datetime_complete - start).total_seconds()))
        return cls(label, rows, wall)

    def best(self, first: int | None = None, within: float | None = None, epochs: int | None = None) -> float:
        """The best accuracy among the first ``first`` trials, those done within ``within`` seconds, or those done
        before ``epochs`` epochs were trained in all."""
        best, trained = 0.0, 0
        for state, accuracy, ran, at in self.trials[:first]:
            trained += ran
            if accuracy is not None and (within is None or at <= within) and (epochs is None or trained <= epochs):
                best = max(best, accuracy)
        return best

    def reach(self, target: float) -> tuple[int, float] | None:
        """(epochs, seconds) trained until a completed trial first reached ``target``; None if none did."""
        epochs = 0
        for state, accuracy, ran, at in self.trials:
            epochs += ran
            if accuracy is not None and accuracy >= target - 1e-9:
                return epochs, at
        return None

    @property
    def epochs(self) -> int:
        return sum(e for s, a, e, w in self.trials)

    def epochs_of_first(self, first: int) -> int:
        return sum(e for s, a, e, w in self.trials[:first])

    @property
    def pruned(self) -> int:
        return sum(1 for s, *_ in self.trials if s == "PRUNED")


def run_search(label: str, seed: int, max_evals: int, prune, timeout: float | None, root: Path) -> Search:
    started = time.perf_counter()
    result = minimize(
        create_model, data, max_evals=max_evals, seed=seed, prune=prune, timeout=timeout,
        directory=root, study_name=f"{label}-seed{seed}", show_progress=False, keep_models=0,
    )
    search = Search.from_result(label, result, time.perf_counter() - started)
    print(f"  {label:10s} seed {seed}: {len(search.trials)} trials, {search.pruned} pruned, {search.epochs} epochs, "
          f"{search.wall:.0f} s, best accuracy {search.best():.4f}", file=sys.stderr, flush=True)
    return search


def main() -> None:
    global EPOCHS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=20, help="max_evals of the full-training search")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--pruners", default="asha,median,hyperband")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "pruning.md"))
    args = parser.parse_args()
    EPOCHS = args.epochs
    torch.set_num_threads(1)  # tiny models: threads cost more than they give, and the runs stay comparable
    pruners = args.pruners.split(",")
    rows: dict[str, list[dict[str, float | None]]] = {p: [] for p in pruners}
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.repeats):
            full = run_search("full", seed, args.trials, None, None, Path(tmp))
            target = full.best()
            full_epochs, full_seconds = full.reach(target)
            lines.append(
                f"| {seed} | none | {len(full.trials)} | 0 | {full.epochs} | {full.wall:.0f} | {target:.4f} | "
                f"{full_epochs} | {full_seconds:.0f} | - | {full.epochs} | {target:.4f} | {target:.4f} | {target:.4f} |"
            )
            for prune in pruners:
                search = run_search(prune, seed, 3 * args.trials, prune, None, Path(tmp))
                reached = search.reach(target)
                row = {
                    "epochs_ratio": None if reached is None else full_epochs / reached[0],
                    "seconds_ratio": None if reached is None else full_seconds / max(reached[1], 1e-9),
                    "best_same_trials": search.best(first=args.trials),
                    "epochs_same_trials": search.epochs_of_first(args.trials),
                    "best_same_wall": search.best(within=full.wall),
                    "best_same_epochs": search.best(epochs=full.epochs),
                    "target": target,
                    "reached_epochs": None if reached is None else reached[0],
                    "full_epochs": full_epochs,
                }
                rows[prune].append(row)
                reach_text = "not reached | -" if reached is None else f"{reached[0]} | {reached[1]:.0f}"
                ratio = "-" if reached is None else f"{row['epochs_ratio']:.1f}x"
                lines.append(
                    f"| {seed} | {prune} | {len(search.trials)} | {search.pruned} | {search.epochs} | "
                    f"{search.wall:.0f} | {search.best():.4f} | {reach_text} | {ratio} | "
                    f"{row['epochs_same_trials']} | {row['best_same_trials']:.4f} | {row['best_same_epochs']:.4f} | "
                    f"{row['best_same_wall']:.4f} |"
                )
    write_report(args, rows, lines)


def _median(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    # A search that never reached the target counts as the worst case (ratio 0) in the median.
    return f"{statistics.median(known + [0.0] * (len(values) - len(known))):.2f}"


def write_report(args: argparse.Namespace, rows: dict[str, list[dict]], lines: list[str]) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = [
        "| pruner | reached the target | epochs saved to reach it | time saved to reach it | "
        f"epochs of the first {args.trials} trials (full: {args.trials * args.epochs}) | "
        "best accuracy, same max_evals | best accuracy, same epochs | best accuracy, same wall time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    targets = statistics.median(r["target"] for r in next(iter(rows.values())))
    for prune, results in rows.items():
        summary.append(
            f"| {prune} | {sum(r['epochs_ratio'] is not None for r in results)}/{len(results)} | "
            f"{_median([r['epochs_ratio'] for r in results])}x | {_median([r['seconds_ratio'] for r in results])}x | "
            f"{statistics.median(r['epochs_same_trials'] for r in results):.0f} | "
            f"{statistics.median(r['best_same_trials'] for r in results):.4f} | "
            f"{statistics.median(r['best_same_epochs'] for r in results):.4f} | "
            f"{statistics.median(r['best_same_wall'] for r in results):.4f} |"
        )
    text = f"""# Pruning benchmark

Generated by `benchmarks/pruning.py` (`--repeats {args.repeats} --trials {args.trials} --epochs {args.epochs}`,
`--pruners {args.pruners}`), Keras {keras.__version__} on PyTorch {torch.__version__} (CPU, 1 thread), Optuna
{__import__("optuna").__version__}, TPE (hyperbrace's default `algo`), on a shared 2-core machine: wall times are
noisy, epochs are exact.

Task: a one-hidden-layer Keras MLP on scikit-learn's digits (1,000 training / 797 validation images), searched
over width, dropout, optimizer (SGD / Adam / RMSprop) and learning rate (1e-4 to 1, log scale); a trial trains
{args.epochs} epochs and its loss is minus its final validation accuracy. The pruner watches the default
`prune_on="val_loss"`.

The target of each repeat is the best validation accuracy of the full-training search ({args.trials} trials,
`prune=None`; median target {targets:.4f}). Each pruned search (same seed) runs {3 * args.trials} trials. "Epochs
saved" is the full search's epochs until it first reached its best
divided by the pruned search's epochs until it first reached that accuracy (a repeat that never reached it counts
as 0x).

What this means for hyperbrace's default (`prune="median"`) and for the 3x target: `docs/pruning.md`.

## Summary (medians over {args.repeats} repeats)

{chr(10).join(summary)}

## Every search

| seed | pruner | trials | pruned | epochs trained | wall s | best accuracy | epochs to target | s to target | epochs saved | epochs, first {args.trials} trials | best, first {args.trials} trials | best, full search's epochs | best, full search's wall time |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(lines)}
"""
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
