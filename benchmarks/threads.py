"""Benchmark: the fastest math-library thread count for a one-process search (``n_jobs=1``), idle and busy.

Each setting runs in a fresh process: ``minimize(..., n_jobs=1)`` over the race's CNN (benchmarks/race.py, task
``cnn``; ``--trials`` trials of ``--epochs`` epochs, pruning off so every setting trains the same epochs), with
PyTorch's intra-op threads (``torch.set_num_threads``, which Keras' torch backend uses) set to each value of
``--threads`` (``default`` = PyTorch's own choice, one per core; ``hyperbrace`` = what ``minimize`` now chooses
by itself: the idle cores, hyperbrace/threads.py). "busy" runs the same with as many CPU-bound
processes beside it as there are cores (another job filling the machine, as on a shared server or a laptop that
compiles). Settings are interleaved per repeat.

Run::

    .venv/bin/python benchmarks/threads.py                 # writes benchmarks/results/threads-<cores>cores.md
    # the three Keras backends with hyperbrace's defaults, next to PyTorch's thread settings, idle and busy:
    .venv/bin/python benchmarks/threads.py --backends tensorflow,jax,torch --threads 1,default,hyperbrace
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from hyperbrace import choice, uniform  # noqa: E402,F401  (the templates of torch_model)


def burn(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


_T: dict = {}  # the torch child's data and settings, read by torch_model (a module-level template function)


def torch_model():
    """The race's CNN in plain PyTorch, with the article's four templates."""
    torch, nn = _T["torch"], _T["torch"].nn
    x, y, xv, yv, epochs = _T["x"], _T["y"], _T["xv"], _T["yv"], _T["epochs"]
    _T["used"] = torch.get_num_threads()
    width, rate = {{choice([256, 512, 1024])}}, {{uniform(0.0, 1.0)}}
    batch = {{choice([64, 128])}}

    def block(i, o, k):
        return [nn.Conv2d(i, o, k, padding="same"), nn.BatchNorm2d(o, momentum=0.1), nn.ReLU()]

    model = nn.Sequential(*block(1, 8, 3), *block(8, 8, 3), nn.MaxPool2d(2), *block(8, 16, 5),
                          *block(16, 16, 5), nn.MaxPool2d(2), *block(16, 32, 3), nn.Flatten(),
                          nn.Linear(128, width), nn.ReLU(), nn.Dropout(rate), nn.Linear(width, 10))
    optimizer = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD}[
        {{choice(["rmsprop", "adam", "sgd"])}}](model.parameters(), lr=1e-3)
    accuracy = 0.0
    for _ in range(epochs):
        model.train()
        for i in range(0, len(x), batch):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + batch]), y[i:i + batch]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = float((model(xv).argmax(1) == yv).float().mean())
    return -accuracy


def child_torch(threads: str, trials: int, epochs: int) -> dict:
    """The same CNN written in plain PyTorch (for machines without Keras): hyperbrace's PyTorch path."""
    import torch

    if threads not in ("default", "hyperbrace"):
        torch.set_num_threads(int(threads))
    import race

    from hyperbrace import minimize

    x, y, xv, yv = (torch.as_tensor(a) for a in race.load_data("cnn"))
    _T.update(torch=torch, x=x.permute(0, 3, 1, 2), y=y, xv=xv.permute(0, 3, 1, 2), yv=yv, epochs=epochs)
    started = time.perf_counter()
    minimize(torch_model, max_evals=trials, seed=0, prune=None, show_progress=False,
             directory=tempfile.mkdtemp(), keep_models=0)
    return {"threads": threads, "torch_threads": _T["used"], "seconds": time.perf_counter() - started}


def child(threads: str, trials: int, epochs: int) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent))
    on_torch = os.environ["KERAS_BACKEND"] == "torch"
    if on_torch:
        import torch

        if threads not in ("default", "hyperbrace"):
            torch.set_num_threads(int(threads))
    import race

    from hyperbrace import choice, minimize, uniform  # noqa: F401  (choice, uniform: the templates)

    race.EPOCHS = epochs
    race._EVENTS = open(os.devnull, "w")
    data = race.load_data("cnn")

    used = [0]

    def create_model(x_train, y_train, x_val, y_val):
        if on_torch:
            used[0] = torch.get_num_threads()
        values = {"Dense": {{choice([256, 512, 1024])}}, "Dropout": {{uniform(0.0, 1.0)}},
                  "optimizer": {{choice(["rmsprop", "adam", "sgd"])}}, "batch_size": {{choice([64, 128])}}}
        model, batch_size = race.build("cnn", values.__getitem__)
        return -race.train(model, batch_size, (x_train, y_train, x_val, y_val))

    started = time.perf_counter()
    minimize(create_model, lambda: data, max_evals=trials, seed=0, prune=None, show_progress=False,
             directory=tempfile.mkdtemp(), keep_models=0)
    return {"threads": threads, "torch_threads": used[0] if on_torch else "-",
            "backend": os.environ["KERAS_BACKEND"], "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="1,2,4,default,hyperbrace",
                        help="torch threads: numbers, default (one per core), hyperbrace (its own choice)")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--modes", default="idle,busy")
    parser.add_argument("--out", default=None)
    parser.add_argument("--tag", default="", help="added to the file name, e.g. the machine")
    parser.add_argument("--framework", default="keras", choices=["keras", "torch"])
    parser.add_argument("--backends", default="torch",
                        help="Keras backends to compare (framework keras), e.g. tensorflow,jax,torch; on TensorFlow "
                             "and JAX only the thread settings 'hyperbrace' and 'default' apply")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        run = child_torch if args.framework == "torch" else child
        print(json.dumps(run(args.child, args.trials, args.epochs)))
        return
    cores = len(os.sched_getaffinity(0))
    rows = []
    backends = args.backends.split(",") if args.framework == "keras" else ["torch"]
    settings = [(backend, threads) for backend in backends for threads in args.threads.split(",")
                if backend == "torch" or threads in ("default", "hyperbrace")]
    for repeat in range(args.repeats):
        for mode in args.modes.split(","):
            for backend, threads in settings:
                burners = []
                if mode == "busy":
                    stop = time.time() + 3600
                    burners = [multiprocessing.Process(target=burn, args=(stop,)) for _ in range(cores)]
                    for b in burners:
                        b.start()
                load = os.getloadavg()[0]
                env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
                env.pop("OMP_NUM_THREADS", None)
                if threads != "hyperbrace":  # a fixed setting: OMP_NUM_THREADS tells hyperbrace to leave it alone
                    env["OMP_NUM_THREADS"] = str(cores) if threads == "default" else threads
                out = subprocess.run([sys.executable, __file__, "--child", threads, "--trials", str(args.trials),
                                      "--epochs", str(args.epochs), "--framework", args.framework], capture_output=True, text=True,
                                     env=env)
                for b in burners:
                    b.terminate()
                    b.join()
                if out.returncode:
                    print(out.stderr[-2000:], file=sys.stderr)
                    continue
                row = json.loads(out.stdout.strip().splitlines()[-1])
                row.update(mode=mode, repeat=repeat, load=load, backend=backend)
                rows.append(row)
                print(json.dumps(row), flush=True)
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    command = " ".join(["benchmarks/threads.py", *sys.argv[1:]])
    lines = [
        f"# Thread settings for a one-process search: {cores} cores", "",
        f"Generated by `{command}` on a machine with {cores} cores (CPU only; Keras {installed('keras')}, PyTorch "
        f"{installed('torch')}, TensorFlow {installed('tensorflow-cpu')}, JAX {installed('jax')}): seconds for "
        f"{args.trials} trials of the race's CNN ({args.framework}), {args.epochs} epochs each, "
        "`minimize(n_jobs=1, prune=None)`, each in a fresh process (imports not timed; on TensorFlow and JAX the "
        "trials run in one recycled worker process, whose start is timed); median over repeats (each "
        "value in brackets). busy = one CPU-bound process per core beside the search. Load = 1-minute load average "
        "before the run.", "",
        "| mode | backend | torch threads | seconds (median) | runs | load at start |", "|---|---|---|---|---|---|",
    ]
    for mode in args.modes.split(","):
        for backend, threads in settings:
            got = [r for r in rows if r["mode"] == mode and r["threads"] == threads and r["backend"] == backend]
            if got:
                label = f"{threads} ({'/'.join(str(r['torch_threads']) for r in got)})" if not threads.isdigit() \
                    else threads
                lines.append(f"| {mode} | {backend} | {label} | {statistics.median(r['seconds'] for r in got):.1f} | "
                             + ", ".join(f"{r['seconds']:.1f}" for r in got)
                             + " | " + ", ".join(f"{r['load']:.1f}" for r in got) + " |")
    text = "\n".join(lines) + "\n"
    out = Path(args.out or HERE / "results" / f"threads-{cores}cores{args.tag}-{args.framework}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
