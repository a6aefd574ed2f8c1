"""Worker recycling: a worker whose memory grew past HYPERBRACE_WORKER_MAX_GROWTH_MB leaves between two trials and a
fresh process takes its place, with no trial lost, failed or counted twice (a few seconds: no framework imported)."""

from __future__ import annotations

import os

from optuna.trial import TrialState

from hyperbrace import minimize, uniform  # noqa: F401  (the template names the distribution)
from hyperbrace.recycle import rss_mb

_kept: list[bytearray] = []  # what a leaking framework would keep: 40 MiB more per trial, in each worker process


def leaky(x=None):
    value = {{uniform(0, 1)}}
    _kept.append(bytearray(40 * 2**20))  # bytearray() writes zeros: resident, not just reserved
    return {"loss": value, "pid": os.getpid(), "rss_mb": rss_mb()}


def test_a_worker_that_grows_past_the_bound_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERBRACE_WORKER_MAX_GROWTH_MB", "60")
    result = minimize(leaky, max_evals=8, n_jobs=2, directory=tmp_path, show_progress=False, seed=0)
    trials = result.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8  # nothing failed, re-queued or run twice
    pids = {t.user_attrs["pid"] for t in trials}
    # Memory is read after each trial; the first sets the baseline. After the 3rd trial a worker has grown 80 MiB,
    # past the 60 MiB bound, and leaves. Two workers that never left would run all 8 trials in 2 processes.
    assert len(pids) >= 3, pids
    # No process ran more than 3 trials, so none held more than 3 trials' leak.
    per_pid: dict[int, list[float]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        per_pid.setdefault(t.user_attrs["pid"], []).append(t.user_attrs["rss_mb"])
    assert all(len(v) <= 3 and v[-1] - v[0] <= 2 * 40 + 20 for v in per_pid.values()), per_pid


def test_recycling_off_keeps_the_workers(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERBRACE_WORKER_MAX_GROWTH_MB", "0")
    result = minimize(leaky, max_evals=6, n_jobs=2, directory=tmp_path, show_progress=False, seed=0)
    assert len({t.user_attrs["pid"] for t in result.study.trials}) <= 2
