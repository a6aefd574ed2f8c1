"""Race: which tuner gives the better Keras model sooner, on the same model, data, cores, threads and clock.

Tools (each runs one search on one task with one seed, in a fresh process, for ``--budget`` seconds):

* ``hb-default``: hyperbrace with its defaults (``minimize(model, data, timeout=...)``, nothing else set);
* ``hb-median``, ``hb-hyperband``: hyperbrace (TPE) with its other pruners (``hb-median`` is hyperbrace's
  default before this benchmark: TPE + ``prune="median"``);
* ``hb-none``, ``hb-loss``, ``hb-acc`` (only when named in ``--tools``): hyperbrace's defaults with
  ``prune=None``, to measure what the default pruning saves against full training with the same sampler; with
  ``prune_on="val_loss"`` (the default before ``prune_on="auto"``: pruning on the loss while the race scores
  accuracy); and with ``prune_on="val_accuracy"`` named (what ``"auto"`` learns here by itself);
* ``hyperas``: the Hyperas way: hyperopt's TPE (``fmin(tpe.suggest)``, the engine Hyperas drives; Hyperas itself
  does not run on Keras 3), every trial trained to the end;
* ``kt-hyperband``, ``kt-bayes``: KerasTuner 1.4 ``Hyperband`` (``max_epochs=EPOCHS, factor=3``) and
  ``BayesianOptimization`` (every trial trained to the end), objective ``val_accuracy``;
* ``optuna-median``, ``optuna-hyperband``: Optuna 5 (default TPE) with
  ``optuna_integration.KerasPruningCallback(trial, "val_accuracy")`` and ``MedianPruner()`` /
  ``HyperbandPruner(min_resource=1, max_resource=EPOCHS, reduction_factor=3)``.

Every tool gets the same model code (``build``) and the same space, written in its own API; the same
``OMP_NUM_THREADS=1`` environment and ``torch.set_num_threads(1)``; the same wall-clock budget, counted from the
moment its search starts (after imports and data loading) until the process is killed. Tools run one after
another, interleaved per seed (seed 0: every task and tool, then seed 1, ...), so that load drifts on this shared
machine hit every tool alike; the 1-minute load average before each run is recorded.

What counts: a trial's score is the best validation accuracy of its epochs, recorded when its ``fit`` returns
normally (a pruned trial's partial training does not count: no tool hands that model back). Epochs are counted by
a callback in every ``fit``. Per run: best score at 25/50/100% of the budget, epochs trained, and the time and
epochs to first reach the ``hyperas`` run's final best (same task and seed), as ratios ``hyperas / tool``.

Run (about ``seeds × tasks × tools × (budget + 10 s) / parallel``; the default, 5 seeds of 120 s, two runs at a
time, is about an hour and a half; each run is one process with one thread)::

    .venv/bin/python benchmarks/race.py                          # writes benchmarks/results/race.md and race.svg
    .venv/bin/python benchmarks/race.py --seeds 1 --budget 20 --tools hb-default,hyperas   # smoke run
    .venv/bin/python benchmarks/race.py --report-only            # re-read benchmarks/results/race/*.jsonl.gz
    .venv/bin/python benchmarks/race.py --epochs 30 --budget 150 --seeds 3 --tools hb-default,hb-none,hyperas
    # the pruning race on 30-epoch trials: writes benchmarks/results/race-30-epochs.md and .svg; another budget
    # writes its own report beside the standard ones (race-600s.md for --budget 600)

Every report ends with the issue's goals, checked against its own table: the defaults' time and epochs ratios
against 5x and 3x, and their margin over the best peer at 50% and 100% of the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The template names, as module globals: hyperbrace resolves a template function's names like Python does.
from hyperbrace import choice, loguniform, uniform  # noqa: E402,F401
RESULTS = Path(__file__).parent / "results"
RUNS = Path(os.environ.get("RACE_RUNS", RESULTS / "race"))
TOOLS = ("hb-default", "hb-median", "hb-hyperband", "hyperas", "kt-hyperband", "kt-bayes",
         "optuna-median", "optuna-hyperband")
#: Run only when named: ``hb-none`` is hyperbrace's defaults with ``prune=None`` (every trial trained to the end,
#: the same ``algo="auto"``), the reference that isolates what the default pruning saves; ``hb-loss`` judges
#: trials by ``val_loss`` (the default until ``prune_on="auto"``; the earlier ``hb-default`` runs were this), and
#: ``hb-acc`` by ``val_accuracy`` named explicitly.
EXTRA_TOOLS = ("hb-none", "hb-loss", "hb-acc")
#: Validation examples per task: one configuration's accuracy has a standard error of sqrt(p(1-p)/n).
VAL_SIZES = {"cnn": 1594, "mlp": 4000}
TASKS = ("cnn", "mlp")

# ---------------------------------------------------------------------------------------------------------------
# The tasks: data and model, shared by every tool. A space is a list of (name, kind, args); `build` gets a
# `get(name)` that returns each value when the model needs it (so conditional parameters stay conditional in the
# define-by-run tools).

EPOCHS = 15
#: Bumped whenever a task's data or model changes, so that the report never mixes runs of different tasks.
TASKS_VERSION = 2
_EVENTS = None  # the open JSONL file this process appends to
_T0 = 0.0
_EPOCHS_DONE = 0

SPACES = {
    # The Hyperas article's CNN and its four templates (examples/gala_cnn.py), at 8x8 with 8-16-32 filters, on
    # scikit-learn's digits moved by up to a pixel and noised (the article's CIFAR-10 cannot be downloaded here).
    "cnn": [
        ("Dense", "choice", [256, 512, 1024]),
        ("Dropout", "uniform", (0.0, 1.0)),
        ("optimizer", "choice", ["rmsprop", "adam", "sgd"]),
        ("batch_size", "choice", [64, 128]),
    ],
    # An MLP with a conditional depth: units_2 and units_3 exist only with 2 or 3 layers.
    "mlp": [
        ("layers", "choice", [1, 2, 3]),
        ("units_1", "choice", [16, 32, 64, 128, 256]),
        ("units_2", "choice", [16, 32, 64, 128, 256]),
        ("units_3", "choice", [16, 32, 64, 128, 256]),
        ("dropout", "uniform", (0.0, 0.6)),
        ("optimizer", "choice", ["sgd", "adam", "rmsprop"]),
        ("lr", "loguniform", (1e-4, 1.0)),
        ("batch_size", "choice", [32, 64, 128]),
    ],
}


def load_data(task: str):
    """(x_train, y_train, x_val, y_val), made from data scikit-learn ships, with headroom and little noise in the
    score: configurations span about 0.5-0.8 (CNN) and 0.2-0.75 (MLP) validation accuracy, and the validation
    sets (1,594 and 4,000 examples) put one configuration's standard error near 1 and 0.7 points."""
    import numpy as np

    rng = np.random.default_rng(0)
    if task == "cnn":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        order = rng.permutation(len(x))
        images, y = x[order].reshape(-1, 8, 8) / 16.0, y[order]

        def jitter(images, labels, copies):
            """Each image `copies` times, moved up to 1 pixel and with noise of standard deviation 0.15."""
            out = []
            for _ in range(copies):
                for image in images:
                    dy, dx = rng.integers(-1, 2, size=2)
                    out.append(np.roll(np.roll(image, dy, axis=0), dx, axis=1) + rng.normal(0, 0.15, (8, 8)))
            return np.array(out, dtype="float32")[..., None], np.tile(labels, copies)

        # Train on 1,000 digits; validate on two jittered copies of the other 797 (no digit in both sets).
        return (*jitter(images[:1000], y[:1000], 1), *jitter(images[1000:], y[1000:], 2))
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=5000, n_features=40, n_informative=12, n_redundant=8, n_classes=5,
                               n_clusters_per_class=2, flip_y=0.05, class_sep=1.0, random_state=0)
    x = ((x - x.mean(0)) / x.std(0)).astype("float32")
    return x[:1000], y[:1000], x[1000:], y[1000:]


def build(task: str, get):
    """The model for one configuration, compiled, and the batch size to train it with."""
    import keras
    from keras import layers

    if task == "cnn":
        model = keras.Sequential([keras.Input((8, 8, 1))])
        for block in ((8, 3), (8, 3), "pool", (16, 5), (16, 5), "pool", (32, 3)):
            if block == "pool":
                model.add(layers.MaxPooling2D((2, 2)))
                continue
            model.add(layers.Conv2D(block[0], block[1], padding="same"))
            model.add(layers.BatchNormalization(momentum=0.9))
            model.add(layers.Activation("relu"))
        model.add(layers.Flatten())
        model.add(layers.Dense(get("Dense"), activation="relu"))
        model.add(layers.Dropout(get("Dropout")))
        model.add(layers.Dense(10, activation="softmax"))
        model.compile(optimizer=get("optimizer"), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model, get("batch_size")
    model = keras.Sequential([keras.Input((40,))])
    for i in range(1, get("layers") + 1):
        model.add(layers.Dense(get(f"units_{i}"), activation="relu"))
    model.add(layers.Dropout(get("dropout")))
    model.add(layers.Dense(5, activation="softmax"))
    optimizer = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
                 "rmsprop": keras.optimizers.RMSprop}[get("optimizer")](learning_rate=get("lr"))
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, get("batch_size")


def _event(**fields) -> None:
    fields["t"] = round(time.perf_counter() - _T0, 3)
    _EVENTS.write(json.dumps(fields) + "\n")
    _EVENTS.flush()


def _epoch_logger():
    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            global _EPOCHS_DONE
            _EPOCHS_DONE += 1
            logs = logs or {}
            # val_loss too: benchmarks/pruning_replay.py replays pruning on either metric.
            _event(kind="epoch", val_acc=float(logs.get("val_accuracy", 0.0)),
                   val_loss=float(logs.get("val_loss", "nan")), epochs=_EPOCHS_DONE)

    return EpochLogger()


def train(model, batch_size, data, callbacks=(), **fit_kwargs) -> float:
    """Train one configuration (every tool's fits go through here) and record its score if it was not pruned."""
    x_train, y_train, x_val, y_val = data
    fit_kwargs.setdefault("epochs", EPOCHS)
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), batch_size=batch_size, verbose=0,
                        validation_batch_size=512,
                        callbacks=[_epoch_logger(), *callbacks], **fit_kwargs)
    score = max(history.history["val_accuracy"])
    _event(kind="trial", score=score, epochs=_EPOCHS_DONE, ran=len(history.history["val_accuracy"]))
    return score


# ---------------------------------------------------------------------------------------------------------------
# The tools, each written the way its documentation shows.

def run_hyperbrace(task, data, seed, budget, prune, workdir):
    import hyperbrace

    if task == "cnn":
        def create_model(x_train, y_train, x_val, y_val):
            values = {"Dense": {{choice([256, 512, 1024])}}, "Dropout": {{uniform(0.0, 1.0)}},
                      "optimizer": {{choice(["rmsprop", "adam", "sgd"])}}, "batch_size": {{choice([64, 128])}}}
            model, batch_size = build("cnn", values.__getitem__)
            return -train(model, batch_size, (x_train, y_train, x_val, y_val))
    else:
        def create_model(x_train, y_train, x_val, y_val):
            values = {"layers": {{choice([1, 2, 3])}}}
            for i in range(1, values["layers"] + 1):
                values[f"units_{i}"] = {{choice([16, 32, 64, 128, 256], name=f"units_{i}")}}
            values.update(dropout={{uniform(0.0, 0.6)}}, optimizer={{choice(["sgd", "adam", "rmsprop"])}},
                          lr={{loguniform(1e-4, 1.0)}}, batch_size={{choice([32, 64, 128])}})
            model, batch_size = build("mlp", values.__getitem__)
            return -train(model, batch_size, (x_train, y_train, x_val, y_val))

    variants = {"default": {}, "none": {"prune": None}, "loss": {"prune_on": "val_loss"},
                "acc": {"prune_on": "val_accuracy"}}
    options = variants.get(prune, {"prune": prune, "algo": "tpe"})
    hyperbrace.minimize(create_model, lambda: data, max_evals=100_000, seed=seed, timeout=budget,
                        directory=workdir, show_progress=False, keep_models=0, **options)


def run_hyperas(task, data, seed, budget, workdir):
    import numpy as np
    from hyperopt import STATUS_OK, Trials, fmin, hp, tpe

    space = {}
    for name, kind, args in SPACES[task]:
        if kind == "choice":
            space[name] = hp.choice(name, args)
        elif kind == "uniform":
            space[name] = hp.uniform(name, *args)
        else:
            space[name] = hp.loguniform(name, np.log(args[0]), np.log(args[1]))

    def objective(params):
        model, batch_size = build(task, params.__getitem__)
        return {"loss": -train(model, batch_size, data), "status": STATUS_OK}

    fmin(objective, space, algo=tpe.suggest, max_evals=100_000, timeout=budget, trials=Trials(),
         rstate=np.random.default_rng(seed), show_progressbar=False)


def _kt_get(hp):
    def get(spec):
        name, kind, args = spec
        if kind == "choice":
            return hp.Choice(name, args)
        if kind == "uniform":
            return hp.Float(name, *args)
        return hp.Float(name, *args, sampling="log")
    return get


def run_kerastuner(task, data, seed, budget, kind, workdir):
    import keras_tuner as kt

    specs = {name: (name, k, a) for name, k, a in SPACES[task]}

    class HyperModel(kt.HyperModel):
        def build(self, hp):
            get = _kt_get(hp)
            model, batch_size = build(task, lambda name: get(specs[name]))
            self.batch_size = batch_size
            return model

        def fit(self, hp, model, *args, **kwargs):
            kwargs.pop("batch_size", None)
            epochs = kwargs.pop("epochs", EPOCHS)
            callbacks = [c for c in kwargs.pop("callbacks", []) if c is not None]
            initial = kwargs.pop("initial_epoch", 0)
            score = train(model, _kt_get(hp)(specs["batch_size"]), data, callbacks=callbacks, epochs=epochs,
                          initial_epoch=initial)
            return {"val_accuracy": score}

    common = dict(objective="val_accuracy", seed=seed, directory=str(workdir), project_name="kt", overwrite=True)
    if kind == "hyperband":
        tuner = kt.Hyperband(HyperModel(), max_epochs=EPOCHS, factor=3, hyperband_iterations=1000, **common)
    else:
        tuner = kt.BayesianOptimization(HyperModel(), max_trials=100_000, **common)
    tuner.search(epochs=EPOCHS, verbose=0)


def run_optuna(task, data, seed, budget, pruner_name, workdir):
    import optuna
    from optuna_integration import KerasPruningCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = (optuna.pruners.MedianPruner() if pruner_name == "median" else
              optuna.pruners.HyperbandPruner(min_resource=1, max_resource=EPOCHS, reduction_factor=3))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
    specs = {name: (name, k, a) for name, k, a in SPACES[task]}

    def objective(trial):
        def get(name):
            _, kind, args = specs[name]
            if kind == "choice":
                return trial.suggest_categorical(name, args)
            return trial.suggest_float(name, *args, log=kind == "loguniform")

        model, batch_size = build(task, get)
        return train(model, batch_size, data, callbacks=[KerasPruningCallback(trial, "val_accuracy")])

    study.optimize(objective, timeout=budget)


def child(args) -> None:
    """One tool on one task with one seed: append events to args.events until killed (or done)."""
    global _EVENTS, _T0, EPOCHS
    import torch

    torch.set_num_threads(1)
    import keras  # noqa: F401

    EPOCHS = args.epochs
    data = load_data(args.task)
    _EVENTS = open(args.events, "a")
    workdir = Path(args.workdir)
    _T0 = time.perf_counter()
    _event(kind="start", tool=args.tool, task=args.task, seed=args.seed, budget=args.budget, epochs=args.epochs,
           load=os.getloadavg()[0], tasks_version=TASKS_VERSION, date=time.strftime("%Y-%m-%d"))
    tool = args.tool
    if tool.startswith("hb-"):
        run_hyperbrace(args.task, data, args.seed, args.budget, tool[3:], workdir)
    elif tool == "hyperas":
        run_hyperas(args.task, data, args.seed, args.budget, workdir)
    elif tool.startswith("kt-"):
        run_kerastuner(args.task, data, args.seed, args.budget, tool[3:], workdir)
    elif tool.startswith("optuna-"):
        run_optuna(args.task, data, args.seed, args.budget, tool[7:], workdir)
    else:
        raise SystemExit(f"unknown tool {tool}")
    _event(kind="done")


def run_child(tool: str, task: str, seed: int, budget: float, epochs: int, events: Path) -> None:
    """Start one tool's process, wait for its start event, give it `budget` seconds, then kill it.

    The child works in a temporary directory made here and removed here: killed at the budget's end, it cannot
    clean up after itself."""
    import shutil
    import tempfile

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               KERAS_BACKEND="torch", PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    events.unlink(missing_ok=True)
    events.with_name(events.name + ".gz").unlink(missing_ok=True)
    workdir = tempfile.mkdtemp(prefix="race-")
    log = open(events.with_suffix(".log"), "w")
    proc = subprocess.Popen([sys.executable, __file__, "--child", tool, "--task", task, "--seed", str(seed),
                             "--budget", str(budget), "--epochs", str(epochs), "--events", str(events),
                             "--workdir", workdir],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    started = None
    while proc.poll() is None:
        if started is None and events.exists() and events.stat().st_size > 0:
            started = time.monotonic()
        if started is not None and time.monotonic() - started > budget + 1:
            break
        time.sleep(0.2)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# Analysis

def pack(events: Path) -> Path:
    """Compress a finished run's events (``.jsonl.gz``: a tenth of the size, read back as is) and drop its log if
    empty (a log with text holds the tool's errors and is kept)."""
    import gzip

    packed = events.with_name(events.name + ".gz")
    packed.write_bytes(gzip.compress(events.read_bytes(), mtime=0))
    events.unlink()
    log = events.with_suffix(".log")
    if log.exists() and log.stat().st_size == 0:
        log.unlink()
    return packed


def run_files(directory: Path) -> list[Path]:
    """A race's run files: packed (``.jsonl.gz``) or still being written (``.jsonl``)."""
    return sorted([*directory.glob("*.jsonl"), *directory.glob("*.jsonl.gz")])


def read_events(path: Path) -> list[dict]:
    """The events of one run file, packed or not."""
    import gzip

    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_run(path: Path) -> dict | None:
    return run_summary(read_events(path))


def run_summary(events: list[dict]) -> dict | None:
    """A run's start event with its finished trials (time, score, epochs so far) and epoch log, within budget."""
    if not events or events[0]["kind"] != "start":
        return None
    start = events[0]
    budget = start["budget"]
    trials = [(e["t"], e["score"], e["epochs"]) for e in events if e["kind"] == "trial" and e["t"] <= budget]
    epochs = [(e["t"], e["epochs"]) for e in events if e["kind"] == "epoch" and e["t"] <= budget]
    return {**start, "trials": trials, "epoch_log": epochs}


def best_at(run: dict, fraction: float) -> float:
    limit = run["budget"] * fraction
    return max((s for t, s, e in run["trials"] if t <= limit), default=0.0)


def reach(run: dict, target: float) -> tuple[float, int] | None:
    for t, s, e in run["trials"]:
        if s >= target - 1e-9:
            return t, e
    return None


def output_stem(epochs: int, budget: float = 120) -> str:
    """``race`` for the standard race (15-epoch trials, 120 s), ``race-30-epochs``, ``race-600s`` or
    ``race-30-epochs-600s`` for the others (kept side by side). The 30-epoch race's standard budget is 150 s.

    >>> output_stem(15), output_stem(30, 150), output_stem(15, 600), output_stem(30, 600)
    ('race', 'race-30-epochs', 'race-600s', 'race-30-epochs-600s')
    """
    stem = "race" if epochs == 15 else f"race-{epochs}-epochs"
    standard = 120 if epochs == 15 else 150
    return stem if budget == standard else f"{stem}-{budget:.0f}s"


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def ratios(index: dict, task: str, tool: str, seeds, ref_tool: str = "hyperas") -> tuple[list, list, int]:
    """Per seed: ``ref_tool``'s time (and epochs) to its final best divided by ``tool``'s to reach that accuracy
    (0 where it never did), and how many seeds reached it."""
    by_time, by_epochs, reached = [], [], 0
    for seed in seeds:
        run, ref = index.get((task, tool, seed)), index.get((task, ref_tool, seed))
        if run is None or ref is None or not ref["trials"]:
            continue
        target = best_at(ref, 1.0)
        ref_reach, got = reach(ref, target), reach(run, target)
        if got is None:
            by_time.append(0.0)
            by_epochs.append(0.0)
        else:
            reached += 1
            by_time.append(ref_reach[0] / max(got[0], 1e-3))
            by_epochs.append(ref_reach[1] / max(got[1], 1))
    return by_time, by_epochs, reached


def goals(index: dict, task: str, tools: list[str], seeds: list[int]) -> list[str]:
    """The issue's goals for ``task``, checked against this run: met or missed, and by how much."""
    if not any((task, "hb-default", s) in index for s in seeds):
        return []
    lines = [f"Goals on `{task}` (hyperbrace's defaults, medians over {len(seeds)} seeds):", ""]
    by_time, by_epochs, reached = ratios(index, task, "hb-default", seeds)
    if by_time:
        verdict = "met" if median(by_time) >= 5 else "missed"
        lines.append(f"* reach the Hyperas way's final best in at most 1/5 of its time: {median(by_time):.2f}x "
                     f"sooner ({verdict}; reached in {reached}/{len(by_time)} seeds)")
        verdict = "met" if median(by_epochs) >= 3 else "missed"
        lines.append(f"* pruning: at least 3x fewer epochs than full training (the Hyperas way) to reach its final "
                     f"best: {median(by_epochs):.2f}x ({verdict})")
    if any((task, "hb-none", s) in index for s in seeds):
        _, none_epochs, none_reached = ratios(index, task, "hb-default", seeds, ref_tool="hb-none")
        verdict = "met" if median(none_epochs) >= 3 else "missed"
        lines.append(f"* pruning against full training with the same sampler (`hb-none`): {median(none_epochs):.2f}x "
                     f"fewer epochs to reach its final best ({verdict}; reached in {none_reached}/"
                     f"{len(none_epochs)} seeds)")
    peers = [t for t in tools if not t.startswith("hb-")]
    mine = [index[(task, "hb-default", s)] for s in seeds if (task, "hb-default", s) in index]
    for fraction in (0.5, 1.0):
        own = median([best_at(r, fraction) for r in mine])
        scores = {t: median([best_at(index[(task, t, s)], fraction) for s in seeds if (task, t, s) in index])
                  for t in peers}
        if not scores:
            continue
        best_peer = max(scores, key=scores.get)
        margin = 100 * (own - scores[best_peer])
        # Paired by seed: the defaults against the best peer of that same seed.
        paired = [best_at(index[(task, "hb-default", s)], fraction)
                  - max(best_at(index[(task, t, s)], fraction) for t in peers if (task, t, s) in index)
                  for s in seeds if (task, "hb-default", s) in index and any((task, t, s) in index for t in peers)]
        wins = sum(d >= 0 for d in paired)
        lines.append(f"* at {fraction:.0%} of the budget, at or above every peer: {own:.4f} against "
                     f"{best_peer} {scores[best_peer]:.4f}, {margin:+.2f} points "
                     f"({'met' if margin >= 0 else 'missed'}); at or above that seed's best peer in {wins}/"
                     f"{len(paired)} seeds")
    spread = [best_at(r, 1.0) for r in mine]
    if len(spread) > 1:
        p = median(spread)
        lines.append(f"* noise: one configuration's accuracy has a standard error of "
                     f"{100 * (p * (1 - p) / VAL_SIZES[task]) ** 0.5:.1f} points on this validation set; the "
                     f"defaults' final best varies by {100 * statistics.stdev(spread):.1f} points (standard "
                     "deviation) from seed to seed")
    return lines + [""]


def _run_days(runs: list[dict], tools: list[str]) -> dict[str, list[str]]:
    """Which tools' runs were made on which days (runs from before dates were recorded: "2026-11-27 or earlier"),
    so that a table mixing sessions says so: ratios between tools are fairest within one session."""
    days: dict[str, list[str]] = {}
    for tool in tools:
        for day in sorted({r.get("date", "2026-11-27 or earlier") for r in runs if r["tool"] == tool}):
            days.setdefault(day, []).append(tool)
    return days


def report(budget: float, epochs: int, command: str) -> str:
    from importlib.metadata import version

    runs = [r for p in run_files(RUNS) if (r := read_run(p)) is not None]
    runs = [r for r in runs if r["budget"] == budget and r.get("epochs") == epochs
            and r.get("tasks_version", 1) == TASKS_VERSION]
    tools = [t for t in TOOLS + EXTRA_TOOLS if any(r["tool"] == t for r in runs)]
    tasks = [t for t in TASKS if any(r["task"] == t for r in runs)]
    index = {(r["task"], r["tool"], r["seed"]): r for r in runs}
    loads = [r["load"] for r in runs]
    lines = [
        "# Race: best validation accuracy against wall-clock time", "",
        f"Generated by `{command}`: Keras {version('keras')} (PyTorch {version('torch')} backend, CPU, 1 thread for "
        f"every tool), Optuna {version('optuna')}, hyperopt {version('hyperopt')}, KerasTuner {version('keras-tuner')},"
        f" optuna-integration {version('optuna-integration')}, {epochs}-epoch trials, a {budget:.0f} s budget per "
        f"run, tools interleaved per seed. Machine: a 2-core machine; 1-minute load average at the runs' starts "
        f"{min(loads):.1f}-{max(loads):.1f} (median {statistics.median(loads):.1f}): absolute times are noisy, so "
        "compare the ratios within one task and seed.", "",
        "Columns: median over seeds of the best validation accuracy at 25/50/100% of the budget; epochs trained in "
        "the budget; trials finished (not pruned); `time ratio` = the hyperas run's time to its final best / this "
        "tool's time to reach that accuracy (>1: sooner), `epochs ratio` likewise in epochs; "
        "`reached` = seeds in which the tool reached the hyperas run's final best within the budget. "
        "A seed that did not reach it counts as ratio 0 in the medians.", "",
        "Runs made on: " + "; ".join(
            f"{', '.join(names)}: {day}" for day, names in sorted(_run_days(runs, tools).items())) + ".", "",
    ]
    summary = []
    for task in tasks:
        seeds = sorted({s for (t, _, s) in index if t == task})
        lines += [f"## Task `{task}`", "",
                  "| tool | best @25% | best @50% | best @100% | epochs | trials | reached | time ratio | "
                  "epochs ratio |", "|---|---|---|---|---|---|---|---|---|"]
        for tool in tools:
            rows = [index[(task, tool, s)] for s in seeds if (task, tool, s) in index]
            if not rows:
                continue
            by_time, by_epochs, reached = ratios(index, task, tool, seeds)
            lines.append(
                f"| {tool} | " + " | ".join(f"{median([best_at(r, f) for r in rows]):.4f}" for f in (0.25, 0.5, 1.0))
                + f" | {median([r['epoch_log'][-1][1] if r['epoch_log'] else 0 for r in rows]):.0f}"
                + f" | {median([len(r['trials']) for r in rows]):.0f} | {reached}/{len(by_time)}"
                + f" | {median(by_time):.2f} | {median(by_epochs):.2f} |"
            )
        lines += ["", "Per seed (best @100%, load at start):", "",
                  "| tool | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---" * (1 + len(seeds)) + "|"]
        for tool in tools:
            cells = [f"{best_at(index[(task, tool, s)], 1.0):.4f} ({index[(task, tool, s)]['load']:.1f})"
                     if (task, tool, s) in index else "-" for s in seeds]
            lines.append(f"| {tool} | " + " | ".join(cells) + " |")
        lines.append("")
        summary += goals(index, task, tools, seeds)
    if summary:
        lines += ["## The goals, checked", ""] + summary
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{output_stem(epochs, budget)}.md").write_text(text)
    plot(index, tools, tasks, budget, epochs)
    return text


def plot(index, tools, tasks, budget, epochs=15) -> None:
    """benchmarks/results/race.svg (race-30-epochs.svg, ...): the median best-so-far accuracy over seeds against
    time, one panel a task (plain SVG: no plotting library needed, and it shows on any code host)."""
    import numpy as np

    colors = ["#d62728", "#ff7f0e", "#bcbd22", "#1f77b4", "#2ca02c", "#17becf", "#9467bd", "#8c564b", "#e377c2"]
    width, height, pad, legend = 560, 320, 45, 120
    plot_width = width - pad - legend
    grid = np.linspace(0, budget, 101)
    panels = []
    for k, task in enumerate(tasks):
        x0 = k * (width + 20)
        curves = {}
        for tool in tools:
            runs = [run for (t, name, s), run in index.items() if t == task and name == tool]
            if runs:
                values = [[max((sc for tt, sc, e in run["trials"] if tt <= g), default=np.nan) for g in grid]
                          for run in runs]
                # The median over seeds starts once every seed has a finished trial (no early dips).
                curves[tool] = np.median(np.array(values, dtype=float), axis=0)
        finite = np.concatenate([c[np.isfinite(c)] for c in curves.values()] or [np.array([0.0, 1.0])])
        # The axis starts near the lowest curve at a quarter of the budget, where the tools differ; earlier,
        # lower values are drawn at the bottom edge.
        quarter = [c[25] for c in curves.values() if np.isfinite(c[25])]
        low = min(quarter) if quarter else float(finite.min())
        low, high = max(0.0, low - 0.01), min(1.0, float(finite.max()) + 0.005)

        def xy(t, v):
            v = max(v, low)
            return (x0 + pad + plot_width * t / budget,
                    height - pad - (height - 2 * pad) * (v - low) / max(high - low, 1e-9))

        parts = [f'<text x="{x0 + pad}" y="18" font-size="13">task {task}: median best val accuracy</text>',
                 f'<rect x="{x0 + pad}" y="{pad}" width="{plot_width}" height="{height - 2 * pad}" '
                 'fill="none" stroke="#999"/>']
        for tick in np.linspace(low, high, 5):
            _, y = xy(0, tick)
            parts.append(f'<text x="{x0 + 2}" y="{y + 4:.0f}" font-size="10">{tick:.3f}</text>')
        for tick in np.linspace(0, budget, 5):
            x, _ = xy(tick, low)
            parts.append(f'<text x="{x - 8:.0f}" y="{height - pad + 14}" font-size="10">{tick:.0f}s</text>')
        for i, (tool, curve) in enumerate(curves.items()):
            points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(t, v) for t, v in zip(grid, curve))
                              if np.isfinite(y))
            dash = "" if tool.startswith("hb-") else ' stroke-dasharray="5,3"'
            stroke = 3 if tool == "hb-default" else 1.5
            color = colors[i % len(colors)]
            parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="{stroke}"{dash}/>')
            parts.append(f'<text x="{x0 + pad + plot_width + 8}" y="{pad + 14 + 13 * i}" font-size="10" '
                         f'fill="{color}">'
                         f"{tool}</text>")
        panels.append("\n".join(parts))
    total = len(tasks) * (width + 20)
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="{height}" font-family="sans-serif">'
           '<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(panels) + "\n</svg>\n")
    (RESULTS / f"{output_stem(epochs, budget)}.svg").write_text(svg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"of {', '.join(TOOLS + EXTRA_TOOLS)}")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per run")
    parser.add_argument("--epochs", type=int, default=15, help="epochs of a fully trained trial")
    parser.add_argument("--parallel", type=int, default=2,
                        help="runs at once (each run uses one core: 2 on a 2-core machine)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--child")
    parser.add_argument("--task")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--events")
    parser.add_argument("--workdir")
    args = parser.parse_args()
    if args.child:
        args.tool = args.child
        child(args)
        return
    if not args.report_only:
        from concurrent.futures import ThreadPoolExecutor

        RUNS.mkdir(parents=True, exist_ok=True)
        jobs = [(seed, task, tool) for seed in range(args.first_seed, args.first_seed + args.seeds)
                for task in args.tasks.split(",") for tool in args.tools.split(",")]

        def one(job):
            seed, task, tool = job
            events = RUNS / f"{task}-{tool}-e{args.epochs}-b{args.budget:.0f}-s{seed}.jsonl"
            print(f"{time.strftime('%H:%M:%S')} seed {seed} {task} {tool} load {os.getloadavg()[0]:.1f}", flush=True)
            run_child(tool, task, seed, args.budget, args.epochs, events)
            run = read_run(pack(events)) if events.exists() else None
            if run:
                print(f"   {task} {tool} seed {seed}: best {best_at(run, 1.0):.4f}, {len(run['trials'])} trials",
                      flush=True)

        # --parallel 2 runs two tools at once (neighbours in the interleaved order), each under the same load.
        with ThreadPoolExecutor(args.parallel) as pool:
            for i, _ in enumerate(pool.map(one, jobs)):
                if (i + 1) % (len(args.tools.split(",")) * len(args.tasks.split(","))) == 0:
                    try:  # an intermediate table after each seed; a failure here must not stop the runs
                        report(args.budget, args.epochs, "benchmarks/race.py " + " ".join(sys.argv[1:]))
                    except Exception as exc:  # noqa: BLE001
                        print(f"report failed: {exc!r}", flush=True)
    print(report(args.budget, args.epochs, "benchmarks/race.py " + " ".join(sys.argv[1:])))


if __name__ == "__main__":
    main()
