"""Pruning rules replayed on real learning curves: what each rule would have saved, at no training cost.

The race (``benchmarks/race.py``) records every epoch's validation accuracy. The runs that train every trial to
the end (``hyperas``, ``hb-none``, ``kt-bayes``) therefore hold complete learning curves, in the order their sampler
proposed the configurations. This script replays pruning rules over those sequences: each trial is stopped where
the rule would have stopped it (it cost those epochs, and its accuracy does not count, as in the race), and we
measure the epochs until a completed trial first reaches the full-training run's final best, against the epochs
the full-training run needed. That isolates the pruning rule from the sampler (the same configurations, in the same
order), and lets many rules be compared on the same curves, which a live race cannot afford on 2 cores.

Rules:

* ``asha(first, factor)``: Optuna's ``SuccessiveHalvingPruner`` as hyperbrace runs it (sequential trials): rungs
  at epochs ``first * factor**k`` below the trial's length; at a rung a trial goes on if it is in the best
  ``1/factor`` of all trials that reached that rung, itself included (Optuna's rule, replayed exactly: with fewer
  than ``factor`` trials there, it must be the best). hyperbrace's default ``"asha"`` is ``asha(round(E/9), 3)``.
  As in hyperbrace, nothing is pruned until one trial has completed;
* ``median``: hyperbrace's ``prune="median"`` (Optuna's ``MedianPruner(n_startup_trials=5, n_warmup_steps=2)``):
  stop a trial whose accuracy at an epoch is below the median of the completed trials' accuracies at that epoch.

Each rule is replayed twice where the curves have both metrics: judging trials by validation accuracy, and by
validation loss (hyperbrace's default until ``prune_on="auto"``, which here judges by accuracy, the race's score);
a trial's score is its best accuracy either way.

What a replay cannot show: a pruned search also spends the saved epochs on new configurations (the race measures
that), and a sampler that learns from pruned trials proposes differently. A rule that stops the eventual best
configuration shows here as a miss: that is the risk of pruning that the race's three seeds can hide.

Run (seconds; reads ``benchmarks/results/race/``)::

    .venv/bin/python benchmarks/pruning_replay.py      # writes benchmarks/results/pruning_replay.md
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import race  # noqa: E402  (the race's run files and their reader)

FULL_TRAINING_TOOLS = ("hyperas", "hb-none", "kt-bayes")
#: Half a standard error of one configuration's accuracy on each task's validation set, in points: a best within
#: this of the full run's is the same model quality as far as the validation set can tell.
VAL_SIZES = {1: {"cnn": 600, "mlp": 1000}, race.TASKS_VERSION: race.VAL_SIZES}


def slack(task: str, version: int) -> float:
    return round(50 * (0.75 * 0.25 / VAL_SIZES[version][task]) ** 0.5, 2)
Curve = list[float]


def curves(events: list[dict], metric: str = "val_acc") -> list[Curve]:
    """The complete learning curves of a full-training run's events, in trial order (a trial cut by the budget is
    left out: its curve is incomplete), as ``metric`` (``val_acc``, or ``val_loss`` negated so higher is better)."""
    result, current = [], []
    for event in events:
        if event["kind"] == "epoch":
            current.append(event["val_acc"] if metric == "val_acc" else -event.get("val_loss", math.nan))
        elif event["kind"] == "trial":
            result.append(current)
            current = []
    return result


def asha(first: int, factor: int) -> Callable[[list[Curve]], list[int]]:
    """The epochs each trial trains under successive halving (sequential trials, Optuna's promotion rule)."""

    def replay(trials: list[Curve]) -> list[int]:
        rungs: dict[int, list[float]] = {}
        spent, completed = [], False
        for curve in trials:
            length = len(curve)
            stop = length
            rung_epoch = first
            while completed and rung_epoch < length:
                value = curve[rung_epoch - 1]
                competing = rungs.setdefault(rung_epoch, [])
                competing.append(value)
                keep = max(len(competing) // factor, 1)  # Optuna: the best len // factor, at least the best one
                if value < sorted(competing)[-keep]:
                    stop = rung_epoch
                    break
                rung_epoch *= factor
            spent.append(stop)
            completed = completed or stop == length
        return spent

    return replay


def median_rule(trials: list[Curve], startup: int = 5, warmup: int = 2) -> list[int]:
    """The epochs each trial trains under hyperbrace's ``prune="median"`` (Optuna's MedianPruner)."""
    done: list[Curve] = []
    spent = []
    for curve in trials:
        stop = len(curve)
        if len(done) >= startup:
            for epoch in range(warmup + 1, len(curve)):
                if curve[epoch - 1] < statistics.median(c[epoch - 1] for c in done):
                    stop = epoch
                    break
        spent.append(stop)
        if stop == len(curve):
            done.append(curve)
    return spent


def outcome(trials: list[Curve], spent: list[int], slack: float = 0.0) -> tuple[int | None, int, float]:
    """(epochs until a completed trial first came within ``slack`` of the full run's final best, or None; epochs in
    all; the best of the completed trials)."""
    target = max(max(c) for c in trials) - slack
    total, reached, best = 0, None, 0.0
    for curve, epochs in zip(trials, spent):
        total += epochs
        if epochs == len(curve):
            best = max(best, max(curve))
            if reached is None and max(curve) >= target - 1e-9:
                reached = total
    return reached, total, best


def rules(epochs: int) -> dict[str, Callable[[list[Curve]], list[int]]]:
    ninth = max(1, round(epochs / 9))
    table = {"none (full training)": lambda trials: [len(c) for c in trials],
             f"asha({ninth}, 3): hyperbrace's default": asha(ninth, 3)}
    for first, factor in ((1, 3), (2, 3), (3, 3), (1, 2), (2, 2), (1, 4), (2, 4), (4, 2)):
        if first != ninth or factor != 3:
            table[f"asha({first}, {factor})"] = asha(first, factor)
    table["median (n_startup 5, warm-up 2)"] = median_rule
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default=str(race.RUNS), help="the race's run files")
    parser.add_argument("--tasks-version", type=int, default=race.TASKS_VERSION,
                        help="replay the runs of this version of the race's tasks (1: the noisier tasks before)")
    parser.add_argument("--output", default=str(race.RESULTS / "pruning_replay.md"))
    args = parser.parse_args()
    runs = []
    for path in race.run_files(Path(args.runs)):
        events = race.read_events(path)
        run = race.run_summary(events)
        if run and run["tool"] in FULL_TRAINING_TOOLS and run.get("tasks_version", 1) == args.tasks_version:
            trials = curves(events)
            if len(trials) >= 3:
                losses = curves(events, "val_loss")  # runs recorded before val_loss was logged have none
                runs.append((run, trials, None if any(math.isnan(v) for c in losses for v in c) else losses))
    command = " ".join(["benchmarks/pruning_replay.py", *sys.argv[1:]])
    lines = ["# Pruning rules replayed on the race's learning curves", "",
             f"Generated by `{command}` from the full-training runs of the race's tasks (version {args.tasks_version}) "
             f"({', '.join(FULL_TRAINING_TOOLS)}: every trial trained to the end, so every curve is complete). Each "
             "rule is replayed over each run's configurations in the order they were tried; `epochs ratio` = the "
             "full run's epochs until it first reached its final best / the rule's epochs until a completed trial "
             "reached it (a run where the rule stopped every trial that reached it counts as 0). Medians over runs; "
             "`reached` = runs in which the rule still reached the full run's final best; `within ... points`: the "
             "same, counting a best within half a standard error of one configuration's accuracy (at 75%) as "
             "reached. Rules: see the script's "
             "docstring. A replay measures the rule alone: the race measures it with the sampler and the clock.", ""]
    groups: dict[tuple[str, int], list] = {}
    for run, trials, losses in runs:
        groups.setdefault((run["task"], run["epochs"]), []).append((run, trials, losses))
    for (task, epochs), members in sorted(groups.items()):
        with_loss = [m for m in members if m[2] is not None]
        lines += [f"## Task `{task}`, {epochs}-epoch trials: {len(members)} runs "
                  f"({', '.join(sorted({r['tool'] for r, _, _ in members}))}), "
                  f"{sum(len(t) for _, t, _ in members)} curves ({len(with_loss)} runs with val_loss)", "",
                  f"| rule | watches | reached | epochs ratio (median) | epochs ratio (worst run) "
                  f"| within {slack(task, args.tasks_version)} points: reached | epochs ratio (median) "
                  "| epochs per trial "
                  "| best missed by (median, points) |", "|---|---|---|---|---|---|---|---|---|"]
        jobs = [(name, rule, "val_accuracy", members) for name, rule in rules(epochs).items()]
        if with_loss:  # hyperbrace's default before prune_on="auto": the same rules, judging trials by their loss
            jobs += [(name, rule, "val_loss", with_loss) for name, rule in rules(epochs).items()
                     if not name.startswith("none")]
        for name, rule, metric, subset in jobs:
            ratios, near, per_trial, missed = [], [], [], []
            for _, trials, losses in subset:
                spent = rule(trials if metric == "val_accuracy" else losses)
                full = [len(c) for c in trials]
                for allowance, into in ((0.0, ratios), (slack(task, args.tasks_version) / 100, near)):
                    full_reached, _, full_best = outcome(trials, full, allowance)
                    reached, total, best = outcome(trials, spent, allowance)
                    into.append(full_reached / reached if reached else 0.0)
                per_trial.append(total / len(trials))
                missed.append(100 * (full_best - best))
            lines.append(f"| {name} | {metric} | {sum(r > 0 for r in ratios)}/{len(ratios)} "
                         f"| {statistics.median(ratios):.2f}x | {min(ratios):.2f}x "
                         f"| {sum(r > 0 for r in near)}/{len(near)} | {statistics.median(near):.2f}x "
                         f"| {statistics.median(per_trial):.1f} of {epochs} | {statistics.median(missed):.2f} |")
        lines.append("")
    text = "\n".join(lines) + "\n"
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
