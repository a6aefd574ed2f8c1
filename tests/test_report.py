"""The HTML report, opened in real headless Chromium: no console errors, every plot drawn, nothing fetched from the
network. Studies: finished with pruned trials (journal), running (SQLite, written to by a second process), only
failures, none at all, and thousands of trials. One browser serves the module; each page load is bounded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import hyperbrace
from hyperbrace import minimize, choice, loguniform, uniform  # noqa: F401  (the templates name them)
from hyperbrace.cli import main
from hyperbrace.htmlreport import write_report
from tests.helpers.browser import chromium_path, launch, open_report

REPO = Path(__file__).resolve().parents[1]
# End-to-end (a real browser, real searches): in `make test`, not in the seconds-long unit run.
pytestmark = [pytest.mark.slow, pytest.mark.browser]
PLOTS = {"history", "importances", "parallel", "slices", "curves", "timeline"}


@pytest.fixture(scope="module")
def browser():
    path, reason = chromium_path()
    if path is None:
        if os.environ.get("HYPERBRACE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"HYPERBRACE_REQUIRE_BROWSER=1 but {reason}")
        print(f"\nskipping the browser tests: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


def curves():
    lr = {{loguniform(1e-3, 0.8)}}
    units = {{choice([16, 32, 64])}}
    activation = {{choice(["relu", "tanh"])}}
    if lr > 0.6:
        raise ValueError("learning rate too high: the loss diverged")
    loss = 1.0
    for epoch in range(8):
        loss = loss * (0.6 + lr) + (units == 16) * 0.01 + (activation == "tanh") * 0.005
        hyperbrace.report(loss, epoch)
        if hyperbrace.should_prune():
            raise hyperbrace.Pruned()
    return loss


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    directory = tmp_path_factory.mktemp("runs")
    result = minimize(curves, max_evals=24, seed=3, directory=directory, show_progress=False)
    return result


def test_a_finished_search_with_pruned_trials_renders_every_plot(finished, browser, tmp_path):
    trials = finished.study.get_trials()
    assert any(t.state == TrialState.PRUNED for t in trials), "the fixture must prune some trials"
    started = time.monotonic()
    html = finished.report(tmp_path / "report.html")
    written = time.monotonic() - started
    page = open_report(browser, html, screenshot=tmp_path / "report.png", sort_by="loss")
    assert page["errors"] == [] and page["external"] == []
    assert set(page["plots"]) == PLOTS and page["not_drawn"] == []
    for key, plot in page["plots"].items():
        assert plot["traces"] > 0 and plot["points"] > 0 and plot["svgs"] > 0, key
        assert plot["width"] > 300 and plot["height"] > 200, key
    # Learning curves: one line per trial that reported, and the pruning points marked.
    assert "pruned here" in page["plots"]["curves"]["names"]
    assert page["plots"]["curves"]["traces"] >= len([t for t in trials if t.intermediate_values])
    text = page["text"]
    best = finished.best_trial
    assert f"best loss {best.value:.6g} (trial {best.number})" in text
    assert "best_run = {" in text and "evaluate(curves," in text
    assert "Pruning stopped" in text and "Search space" in text and "loguniform(" in text and "test_report.py:" in text
    assert (tmp_path / "report.png").stat().st_size > 20_000
    # The trials table sorts by a clicked column (twice: descending), empty cells (pruned trials) last.
    losses = [float(v) for v in page["sorted"] if v]
    assert losses == sorted(losses, reverse=True) and len(losses) >= 3 and page["sorted"][: len(losses)] != []
    print(f"report of {len(trials)} trials written in {written:.1f} s")


def test_a_study_with_only_failures_shows_them_grouped(browser, tmp_path, capsys):
    run_dir = tmp_path / "broken"
    run_dir.mkdir()
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))
    study = optuna.create_study(study_name="broken", storage=storage)
    errors = ['File "model.py", line 9, in model\n    x = data[7]\nIndexError: list index out of range',
              'File "model.py", line 4, in model\n    open(path)\nFileNotFoundError: data.csv']
    for number in range(5):
        study.enqueue_trial({"x": 0.5})
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        trial.set_user_attr("hb.error", errors[number % 2])
        study.tell(trial, state=TrialState.FAIL)
    assert main(["report", str(run_dir)]) == 0
    html = run_dir / "report.html"
    assert capsys.readouterr().out.strip() == str(html)
    page = open_report(browser, html)
    assert page["errors"] == []
    assert set(page["plots"]) == {"timeline"}  # the only figure a study without completed trials has
    assert {key for key, _ in page["not_drawn"]} == PLOTS - {"timeline"}
    text = page["text"]
    assert "3 x IndexError: list index out of range" in text and "2 x FileNotFoundError: data.csv" in text
    assert "trials 0, 2, 4" in text and "No completed trial yet" in text


def wide():
    x = {{uniform(-4, 4)}}
    return (x - 1) ** 2


def narrowed():  # a new version: the range narrowed (the trials inside it are reused), a template added
    x = {{uniform(0, 2)}}
    y = {{uniform(0, 1)}}
    return (x - 1) ** 2 + y


def test_an_empty_study_says_so_and_a_versioned_one_shows_its_versions(browser, tmp_path):
    study = optuna.create_study(study_name="empty")
    html = write_report(study, tmp_path / "empty.html")
    page = open_report(browser, html)
    assert page["errors"] == [] and page["plots"] == {} and len(page["not_drawn"]) == len(PLOTS)
    assert "0 trials" in page["text"]
    # A study whose space changed: the latest version's report, its reused trials (some without y) in every plot.
    from hyperbrace.versions import SpaceChanged

    minimize(wide, max_evals=6, seed=0, directory=tmp_path, study_name="v", show_progress=False)
    with pytest.warns(SpaceChanged):
        latest = minimize(narrowed, max_evals=4, seed=0, directory=tmp_path, study_name="v", show_progress=False)
    page = open_report(browser, latest.report())
    assert page["errors"] == [] and set(page["plots"]) == PLOTS - {"curves"}
    text = page["text"]
    assert "Version 2 of study 'v' (the latest of 2)" in text and "y: added, uniform(0, 1)" in text
    assert "reused from" in text and "v1:" in text and f"{len(latest.reused)} reused from earlier versions" in text


LIVE_SEARCH = """
import sys, time
import hyperbrace
from hyperbrace import minimize, uniform

def live():
    x = {{uniform(-1, 1)}}
    for step in range(4):
        hyperbrace.report((x - 0.2) ** 2 + 1 / (step + 1), step)
        time.sleep(0.3)
    return (x - 0.2) ** 2

minimize(live, max_evals=12, storage=sys.argv[1], study_name="live", directory="runs", show_progress=False,
         prune=None)
"""


def test_a_running_search_written_by_another_process(browser, tmp_path):
    url = f"sqlite:///{tmp_path / 'live.db'}"
    (tmp_path / "search.py").write_text(LIVE_SEARCH)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    search = subprocess.Popen([sys.executable, "search.py", url], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert search.poll() is None, search.communicate()
            assert time.monotonic() < deadline, "the search did not get going"
            try:
                trials = optuna.load_study(study_name="live", storage=url).get_trials()
            except KeyError:
                trials = []
            if sum(t.state == TrialState.COMPLETE for t in trials) >= 3 and any(
                    t.state == TrialState.RUNNING for t in trials):
                break
            time.sleep(0.2)
        html = tmp_path / "live.html"
        assert main(["report", url, "--study", "live", "-o", str(html)]) == 0
    finally:
        search.wait(timeout=120)
    assert search.returncode == 0
    page = open_report(browser, html)
    assert page["errors"] == [] and set(page["plots"]) == PLOTS - {"importances"} or set(page["plots"]) == PLOTS
    assert "The search was running when this report was written" in page["text"]
    assert "RUNNING" in page["text"]


def test_thousands_of_trials_stay_quick_to_write_and_to_open(browser, tmp_path):
    study = optuna.create_study(study_name="big", sampler=optuna.samplers.RandomSampler(seed=0))
    dist = {"lr": optuna.distributions.FloatDistribution(1e-4, 1, log=True),
            "units": optuna.distributions.CategoricalDistribution([32, 64, 128])}
    import random

    rng = random.Random(0)
    trials = []
    for number in range(2000):
        lr, units = 10 ** rng.uniform(-4, 0), rng.choice([32, 64, 128])
        curve = {step: lr + 1 / (step + 1) + units / 1000 for step in range(5)}
        state = TrialState.PRUNED if number % 3 == 0 else TrialState.COMPLETE
        trials.append(optuna.trial.create_trial(
            state=state, value=None if state == TrialState.PRUNED else curve[4], params={"lr": lr, "units": units},
            distributions=dist, intermediate_values=curve if state == TrialState.COMPLETE else
            {s: curve[s] for s in range(2)}, user_attrs={"hb.worker": f"host:{100 + number % 4}:1"}))
    study.add_trials(trials)
    started = time.monotonic()
    html = write_report(study, tmp_path / "big.html")
    written = time.monotonic() - started
    started = time.monotonic()
    page = open_report(browser, html)
    opened = time.monotonic() - started
    assert page["errors"] == [] and set(page["plots"]) == PLOTS
    # The per-trial-line plots show the best and the most recent few hundred, and say so.
    assert page["plots"]["curves"]["traces"] <= 302
    assert "300 of 2000" in page["text"] or "300 of 1334" in page["text"]
    assert html.stat().st_size < 15 * 2**20
    print(f"2000 trials: written in {written:.1f} s, opened in {opened:.1f} s, {html.stat().st_size / 2**20:.1f} MB")


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("HYPERBRACE_TEST_POSTGRES_URL"),
                    reason="needs PostgreSQL: run through scripts/test-postgres.sh (make test starts one)")
def test_a_study_on_postgresql(browser, tmp_path):
    url = os.environ["HYPERBRACE_TEST_POSTGRES_URL"]
    name = f"report-{os.getpid()}-{time.time_ns()}"
    minimize(curves, max_evals=8, seed=5, storage=url, study_name=name, directory=tmp_path, show_progress=False)
    html = tmp_path / "pg.html"
    assert main(["report", url, "--study", name, "-o", str(html)]) == 0
    page = open_report(browser, html)
    assert page["errors"] == [] and {"history", "curves", "timeline"} <= set(page["plots"])
    assert f"hyperbrace report: {name}" in page["text"] and "Study in postgresql://" in page["text"]
