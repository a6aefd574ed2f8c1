"""Check on a real GPU machine that trials are scheduled one per GPU: local ``gpus=`` and Ray ``num_gpus``.

    python benchmarks/gpu_check.py [--trials-per-gpu 2] [--out benchmarks/results/gpu_check.txt]

Runs a tiny PyTorch search (a two-layer network on random data, a few hundred steps) twice:

1. ``minimize(..., gpus="all")``: one worker process per visible GPU, each seeing only its own through
   ``CUDA_VISIBLE_DEVICES``;
2. if Ray is importable: ``minimize(..., cluster=hyperbrace.launchers.Ray(num_gpus=...))`` on a local Ray cluster,
   first with one GPU per trial, then with half a GPU per trial (two trials share one GPU);
3. if Dask is importable: ``minimize(..., n_jobs=2, cluster=Dask(client, resources={"GPU": 1}))`` on a LocalCluster
   whose one worker declares one GPU, so the two worker loops must take turns on it.

Each trial records the ``CUDA_VISIBLE_DEVICES`` it saw, the device torch trained on (name, index, bus id) and whether
the trained parameters really lived on CUDA; the script prints one line per trial and a verdict per run, and exits 1
if a trial that should have had a GPU trained on the CPU, or two trials given whole GPUs ran at once on the same one.
On a machine with no GPU it says so and exits 0 (the project builds and tests without one).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from hyperbrace import choice, loguniform, minimize  # noqa: F401  (the templates name the distributions)


def tiny_torch_search():
    import torch

    lr = {{loguniform(1e-3, 1e-1)}}
    width = {{choice([32, 64])}}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 16, generator=generator).to(device)
    y = (x[:, :1] * 2 - x[:, 1:2]).to(device)
    model = torch.nn.Sequential(torch.nn.Linear(16, width), torch.nn.ReLU(), torch.nn.Linear(width, 1)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    started = time.time()
    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        where = {"name": torch.cuda.get_device_name(index), "index": index,
                 "bus": f"{getattr(props, 'pci_bus_id', '?')}", "uuid": str(getattr(props, "uuid", ""))}
    else:
        where = {"name": "cpu", "index": -1, "bus": "", "uuid": ""}
    return {
        "loss": float(loss),
        "visible": os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
        "device": where,
        "on_cuda": all(p.is_cuda for p in model.parameters()),
        "pid": os.getpid(),
        "start": started,
        "end": time.time(),
    }


def report(title: str, result, whole_gpus: bool) -> list[str]:
    """Lines describing each trial, and the problems found (a trial on the CPU; whole GPUs shared at once)."""
    lines, problems = [f"== {title}"], []
    trials = [t for t in result.study.trials if t.state.name == "COMPLETE"]
    for t in sorted(trials, key=lambda t: t.number):
        a = t.user_attrs
        d = a.get("device", {})
        lines.append(
            f"trial {t.number}: CUDA_VISIBLE_DEVICES={a.get('visible')} device={d.get('name')}#{d.get('index')} "
            f"uuid={d.get('uuid')} trained_on_cuda={a.get('on_cuda')} pid={a.get('pid')} "
            f"ran {a.get('start', 0) - trials[0].user_attrs.get('start', 0):.2f}..{a.get('end', 0) - trials[0].user_attrs.get('start', 0):.2f} s"
        )
        if not a.get("on_cuda"):
            problems.append(f"trial {t.number} trained on the CPU")
    if whole_gpus:
        for i, a in enumerate(trials):
            for b in trials[i + 1:]:
                same = a.user_attrs.get("device", {}).get("uuid") == b.user_attrs.get("device", {}).get("uuid")
                overlap = (a.user_attrs.get("start", 0) < b.user_attrs.get("end", 0)
                           and b.user_attrs.get("start", 0) < a.user_attrs.get("end", 0))
                if same and overlap:
                    problems.append(f"trials {a.number} and {b.number} ran at once on the same whole GPU")
    if len(trials) != len(result.study.trials):
        problems.append(f"{len(result.study.trials) - len(trials)} trial(s) did not complete")
    lines.append("   verdict: " + ("OK" if not problems else "PROBLEM: " + "; ".join(problems)))
    return lines + [f"   problem: {p}" for p in problems]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials-per-gpu", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write the output to this file")
    args = parser.parse_args()
    out: list[str] = []

    def say(*lines: str) -> None:
        for line in lines:
            print(line, flush=True)
            out.append(line)

    try:
        import torch
    except ImportError:
        say("torch is not installed: nothing to check (pip install torch)")
        return 0
    from hyperbrace.executor import visible_gpus

    gpus = visible_gpus()
    say(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}, "
        f"device count: {torch.cuda.device_count() if torch.cuda.is_available() else 0}, visible GPUs: {gpus}")
    if not gpus or not torch.cuda.is_available():
        say("no GPU on this machine: nothing to check (the project builds and passes its tests without one)")
        return 0
    failed = False
    directory = tempfile.mkdtemp(prefix="hyperbrace-gpu-check-")
    n = len(gpus) * args.trials_per_gpu

    def check(title: str, whole_gpus: bool, **options) -> None:
        """One search of n trials with ``options``; its report is printed and its problems counted."""
        nonlocal failed
        result = minimize(tiny_torch_search, max_evals=n, directory=directory, show_progress=False, seed=0,
                          prune=None, **options)
        lines = report(f"{title}: {n} trials", result, whole_gpus=whole_gpus)
        failed |= any("PROBLEM" in line for line in lines)
        say(*lines)

    check(f'minimize(gpus="all"), {len(gpus)} GPU(s)', True, gpus="all", study_name="local-gpus")

    try:
        import ray  # noqa: F401
    except ImportError:
        say("Ray is not importable: the Ray num_gpus check is skipped")
    else:
        try:
            from hyperbrace.launchers import Ray
        except ImportError as exc:
            say(f"this hyperbrace has no Ray launcher ({exc}): the Ray num_gpus check is skipped")
        else:
            for per_trial, whole in ((1, True), (0.5, False)):
                check(f"minimize(cluster=Ray(num_gpus={per_trial}))", whole,
                      n_jobs=max(1, int(len(gpus) / per_trial)), cluster=Ray(num_gpus=per_trial, num_cpus=1),
                      study_name=f"ray-gpus-{per_trial}")
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        say("Dask is not importable: the Dask resources check is skipped")
    else:
        from hyperbrace.launchers import Dask

        # One Dask worker per GPU, each declaring one "GPU" resource: a trial asks for GPU=1, so at most one trial
        # runs per GPU. (A LocalCluster cannot give its workers different CUDA_VISIBLE_DEVICES, so with several GPUs
        # dask-cuda's LocalCUDACluster is the real set-up; with one GPU this checks the resource accounting.)
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, resources={"GPU": 1},
                          dashboard_address=None) as cluster, Client(cluster) as client:
            check('minimize(cluster=Dask(client, resources={"GPU": 1}))', True, n_jobs=2,
                  cluster=Dask(client, resources={"GPU": 1}), study_name="dask-gpus")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(out) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
