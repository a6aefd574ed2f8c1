"""Benchmark: after a space change that narrows the ranges around the old best, how many trials a warm-started
search (hyperbrace's new version, reusing the earlier trials that fit) needs to reach the old best, against a
cold search of the same narrowed space.

Tasks (real models, trained for real, offline, small enough for a loaded CPU):

* ``digits-mlp``: a PyTorch MLP on scikit-learn's digits (1,200 training / 597 validation images): width, depth,
  learning rate, dropout, weight decay, batch size;
* ``digits-cnn``: a small PyTorch CNN on the same 8x8 digits: channels, kernel size, learning rate, dropout;
* ``diabetes-mlp``: a PyTorch MLP regressor on scikit-learn's diabetes data (300 / 142 patients): width,
  learning rate, weight decay, activation.

A trial's loss is its final validation cross-entropy (or mean squared error, standardized), with the weights
initialised from the same seed in every trial, so a configuration's loss does not depend on when it runs.

For every task and repeat (a TPE seed):

1. version 1: ``max_evals=FIRST`` trials over the wide space; its best loss is the *old best*;
2. the space is narrowed around the old best (every float range to half its width, log-scale where it is
   log-uniform, centred on the best value; the choices stay), and the same study is run again: hyperbrace goes on as version 2 and reuses the version-1 trials that fit (*warm*);
3. a new study over the same narrowed space, same seed (*cold*).

Measured: the number of the new search's own trials until one first reaches the old best (loss <= old best), up
to ``max_evals=SECOND`` (not reached: counted as ``SECOND + 1`` in the medians, and shown as ">N"); also the best
loss after 5 and 10 new trials. Trials are counted, not seconds: the machine is shared.

Run (about 30 minutes on a loaded 2-core machine; ``--jobs`` repeats at once)::

    .venv/bin/python benchmarks/space_change.py                    # writes benchmarks/results/space_change.md
    .venv/bin/python benchmarks/space_change.py --repeats 1 --first 8 --second 6 --tasks digits-mlp --out -
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import math
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

import optuna  # noqa: E402
import torch  # noqa: E402

import hyperbrace  # noqa: E402
from hyperbrace import minimize  # noqa: E402

# -- the tasks: a model file written with the space's templates filled in ----------------------------------------

COMMON = '''
import numpy as np
import torch
from torch import nn
from sklearn.datasets import load_diabetes, load_digits

torch.set_num_threads(1)


def digits():
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = (x[order] / 16.0).astype("float32"), y[order].astype("int64")
    return torch.from_numpy(x[:1200]), torch.from_numpy(y[:1200]), torch.from_numpy(x[1200:]), torch.from_numpy(y[1200:])


def diabetes():
    x, y = load_diabetes(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    x = (x - x[:300].mean(0)) / x[:300].std(0)
    y = (y - y[:300].mean()) / y[:300].std()
    x, y = x.astype("float32"), y.astype("float32")[:, None]
    return torch.from_numpy(x[:300]), torch.from_numpy(y[:300]), torch.from_numpy(x[300:]), torch.from_numpy(y[300:])


def train(net, x_train, y_train, x_val, y_val, lr, weight_decay, batch_size, epochs, loss_fn):
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        net.train()
        for index in torch.randperm(len(x_train), generator=generator).split(batch_size):
            optimizer.zero_grad()
            loss_fn(net(x_train[index]), y_train[index]).backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        loss = float(loss_fn(net(x_val), y_val))
    return loss if np.isfinite(loss) else 1e6
'''

TASKS = {
    "digits-mlp": dict(
        data="digits",
        space={
            "units": ("choice", [16, 32, 64, 128, 256]),
            "layers": ("choice", [1, 2, 3]),
            "lr": ("loguniform", 1e-4, 1.0),
            "dropout": ("uniform", 0.0, 0.8),
            "weight_decay": ("loguniform", 1e-7, 1e-1),
            "batch_size": ("choice", [32, 64, 128, 256]),
        },
        body='''
    torch.manual_seed(0)
    units, layers = {units}, {layers}
    blocks, width = [], 64
    for _ in range(layers):
        blocks += [nn.Linear(width, units), nn.ReLU(), nn.Dropout({dropout})]
        width = units
    net = nn.Sequential(*blocks, nn.Linear(width, 10))
    return train(net, x_train, y_train, x_val, y_val, {lr}, {weight_decay}, {batch_size}, 5, nn.CrossEntropyLoss())
''',
    ),
    "digits-cnn": dict(
        data="digits",
        space={
            "channels": ("choice", [4, 8, 16, 32]),
            "kernel": ("choice", [2, 3, 4, 5]),
            "lr": ("loguniform", 1e-4, 1.0),
            "dropout": ("uniform", 0.0, 0.8),
        },
        body='''
    torch.manual_seed(0)
    channels, kernel = {channels}, {kernel}
    net = nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, channels, kernel, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout({dropout}), nn.Linear(channels * 16, 10),
    )
    return train(net, x_train, y_train, x_val, y_val, {lr}, 0.0, 64, 4, nn.CrossEntropyLoss())
''',
    ),
    "diabetes-mlp": dict(
        data="diabetes",
        space={
            "units": ("choice", [4, 8, 16, 32, 64, 128]),
            "lr": ("loguniform", 1e-4, 1.0),
            "weight_decay": ("loguniform", 1e-6, 1.0),
            "activation": ("choice", ["relu", "tanh", "elu", "sigmoid"]),
        },
        body='''
    torch.manual_seed(0)
    act = {{"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "sigmoid": nn.Sigmoid}}[{activation}]
    units = {units}
    net = nn.Sequential(nn.Linear(10, units), act(), nn.Linear(units, units), act(), nn.Linear(units, 1))
    return train(net, x_train, y_train, x_val, y_val, {lr}, {weight_decay}, 32, 20, nn.MSELoss())
''',
    ),
}


def template(name: str, spec: tuple) -> str:
    kind, *args = spec
    if kind == "choice":
        return "{{choice(%r, name=%r)}}" % (list(args[0]), name)
    return "{{%s(%r, %r, name=%r)}}" % (kind, float(args[0]), float(args[1]), name)


def narrowed(space: dict[str, tuple], best: dict) -> dict[str, tuple]:
    """The space narrowed around ``best``, as one zooms in after a first search: every float range to half its
    width (in log space for loguniform), centred on the best value and kept inside the old range; the choices
    stay as they are."""
    out = {}
    for name, (kind, *args) in space.items():
        value = best[name]
        if kind == "choice":
            out[name] = (kind, *args)
            continue
        low, high = args
        log = kind == "loguniform"
        f = math.log if log else (lambda v: v)
        g = math.exp if log else (lambda v: v)
        width = (f(high) - f(low)) / 2
        start = min(max(f(value) - width / 2, f(low)), f(high) - width)
        new_low, new_high = g(start), g(start + width)
        new_low, new_high = max(low, min(new_low, value)), min(high, max(new_high, value))
        out[name] = (kind, float(f"{new_low:.6g}"), float(f"{new_high:.6g}"))
        if not out[name][1] <= value <= out[name][2]:  # rounding must keep the old best inside
            out[name] = (kind, min(out[name][1], value), max(out[name][2], value))
    return out


def model_module(task: str, space: dict[str, tuple], directory: Path, tag: str):
    spec = TASKS[task]
    body = spec["body"].format(**{name: template(name, s) for name, s in space.items()})
    source = (f"{COMMON}\n\ndef data():\n    return {spec['data']}()\n\n\n"
              f"def create_model(x_train, y_train, x_val, y_val):{body}")
    path = directory / f"hb_space_bench_{task.replace('-', '_')}_{tag}.py"
    path.write_text(source)
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[path.stem] = module
    module_spec.loader.exec_module(module)
    return module


def trials_to_reach(result, target: float) -> int | None:
    for count, trial in enumerate(sorted(result.trials, key=lambda t: t.number), start=1):
        if trial.loss is not None and trial.loss <= target:
            return count
    return None


def best_after(result, n: int) -> float | None:
    losses = [t.loss for t in sorted(result.trials, key=lambda t: t.number)[:n] if t.loss is not None]
    return min(losses) if losses else None


def run_one(task: str, seed: int, first: int, second: int, work: Path) -> dict:
    space = TASKS[task]["space"]
    options = dict(seed=seed, show_progress=False, prune=None, algo="tpe", study_name=task)
    wide = model_module(task, space, work, f"wide{seed}")
    v1 = minimize(wide.create_model, wide.data, max_evals=first, directory=work / f"warm{seed}", **options)
    target, best = v1.best_loss, v1.best_run
    narrow_space = narrowed(space, best)
    narrow = model_module(task, narrow_space, work, f"narrow{seed}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hyperbrace.versions.SpaceChanged)
        warm = minimize(narrow.create_model, narrow.data, max_evals=second, directory=work / f"warm{seed}", **options)
    cold = minimize(narrow.create_model, narrow.data, max_evals=second, directory=work / f"cold{seed}", **options)
    assert warm.study.study_name == f"{task}@v2" and cold.study.study_name == task
    return dict(
        task=task, seed=seed, target=target, reused=len(warm.reused),
        warm=trials_to_reach(warm, target), cold=trials_to_reach(cold, target),
        warm5=best_after(warm, 5), cold5=best_after(cold, 5), warm10=best_after(warm, 10), cold10=best_after(cold, 10),
        warm_best=warm.best_loss, cold_best=cold.best_loss,
        narrow=", ".join(f"{n} {s[1:]}" for n, s in narrow_space.items() if s[0] != "choice"),
    )


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--first", type=int, default=30, help="version 1's trials (the wide space)")
    parser.add_argument("--second", type=int, default=20, help="the narrowed searches' trials (warm and cold)")
    parser.add_argument("--jobs", type=int, default=3, help="repeats run at once, one process each")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "space_change.md"),
                        help="the Markdown table to write ('-' prints it)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    started = time.time()
    load = os.getloadavg()[0]
    jobs = [(task, seed) for task in args.tasks.split(",") for seed in range(args.repeats)]
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ProcessPoolExecutor(
        args.jobs, mp_context=multiprocessing.get_context("fork")
    ) as pool:
        futures = [pool.submit(run_one, task, seed, args.first, args.second, Path(tmp)) for task, seed in jobs]
        for future in concurrent.futures.as_completed(futures):
            row = future.result()
            rows.append(row)
            print(f"{row['task']} seed {row['seed']}: target {row['target']:.4g}, reused {row['reused']}, "
                  f"warm {row['warm']}, cold {row['cold']}", file=sys.stderr, flush=True)
    rows.sort(key=lambda r: (list(TASKS).index(r["task"]), r["seed"]))
    report = render(args, rows, time.time() - started, load)
    if args.out == "-":
        print(report)
    else:
        Path(args.out).write_text(report)
        print(f"wrote {args.out}", file=sys.stderr)


def render(args: argparse.Namespace, rows: list[dict], seconds: float, load: float) -> str:
    capped = args.second + 1
    lines = [
        "# Space change benchmark: warm-started new version vs a cold search",
        "",
        f"Generated by `benchmarks/space_change.py --repeats {args.repeats} --first {args.first} --second "
        f"{args.second} --jobs {args.jobs}` ({seconds / 60:.0f} min), hyperbrace {hyperbrace.__version__}, Optuna {optuna.__version__}, "
        f"PyTorch {torch.__version__} (CPU, 1 thread), Python {platform.python_version()}, on a shared 2-core machine "
        f"(load average {load:.1f} at the start): trials are counted, not timed.",
        "",
        f"Each repeat: version 1 searches the wide space ({args.first} TPE trials, seed = repeat); the space is "
        "narrowed around its best (every float range to half its width, log-scale for log-uniform ones, "
        "centred on the best; the choices stay); then the same study runs again "
        "(hyperbrace makes version 2 and reuses the version-1 trials that fit: *warm*) and a new study searches "
        f"the same narrowed space with the same seed (*cold*), {args.second} trials each. \"Trials to the old "
        "best\": the new search's own trials until one's loss is at most version 1's best (reused trials are not "
        f"counted; not reached within {args.second}: shown as >{args.second}, counted as {capped} in the medians).",
        "",
        "## Summary (medians over the repeats)",
        "",
        "| task | repeats | reused trials | trials to the old best, warm | cold | reached, warm | cold | "
        "best after 5, warm | cold | best after 10, warm | cold |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]

        def med(key: str, fill: float | None = None) -> float:
            return statistics.median([r[key] if r[key] is not None else fill for r in mine])

        lines.append(
            f"| {task} | {len(mine)} | {med('reused'):g} | {med('warm', capped):g} | {med('cold', capped):g} | "
            f"{sum(r['warm'] is not None for r in mine)}/{len(mine)} | {sum(r['cold'] is not None for r in mine)}/"
            f"{len(mine)} | {fmt(med('warm5'))} | {fmt(med('cold5'))} | {fmt(med('warm10'))} | {fmt(med('cold10'))} |"
        )
    lines += [
        "",
        "## Every repeat",
        "",
        "\"Best, warm\" is version 2's `best_loss`, which may be a reused trial (the old best itself is reused, so it "
        "is at most the old best); every other warm column counts the new trials only.",
        "",
        "| task | seed | old best (v1) | reused | trials to it, warm | cold | best after 5, warm | cold | "
        "best after 10, warm | cold | best, warm | cold | narrowed space |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        reach = lambda v: str(v) if v is not None else f">{args.second}"  # noqa: E731
        lines.append(
            f"| {r['task']} | {r['seed']} | {fmt(r['target'])} | {r['reused']} | {reach(r['warm'])} | "
            f"{reach(r['cold'])} | {fmt(r['warm5'])} | {fmt(r['cold5'])} | {fmt(r['warm10'])} | {fmt(r['cold10'])} | "
            f"{fmt(r['warm_best'])} | {fmt(r['cold_best'])} | {r['narrow']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
