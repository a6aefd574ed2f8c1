"""The ``hyperbrace`` commands that read a search: ls, trials, best, report, dashboard, rm, --version; each on a
run directory, a journal file and a database URL, and none of them creating storage where there is none."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

import hyperbrace
from hyperbrace import choice, minimize, uniform  # noqa: F401  (the templates name them)
from hyperbrace.cli import main

REPO = Path(__file__).resolve().parents[1]


def model():
    x = {{uniform(-2, 2)}}
    act = {{choice(["relu", "tanh"])}}
    if x > 1.8:
        raise ValueError("x too large")
    return (x - 1) ** 2 + (act == "tanh")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("runs")
    minimize(model, max_evals=8, seed=0, directory=directory, study_name="first", show_progress=False)
    minimize(model, max_evals=3, seed=1, directory=directory, study_name="second", show_progress=False)
    return directory


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    directory = tmp_path_factory.mktemp("db")
    url = f"sqlite:///{directory / 'studies.db'}"
    for name in ("alpha", "beta"):
        minimize(model, max_evals=3, seed=2, storage=url, study_name=name, directory=directory, show_progress=False)
    return url


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def _fails(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"hyperbrace {hyperbrace.__version__} (optuna {optuna.__version__})"


def test_ls_lists_every_study_under_a_directory_or_in_a_database(runs, database, capsys, tmp_path):
    assert main(["ls", str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["study", "trials", "ok/pruned/fail/run/wait"]
    first = next(line for line in lines if line.startswith("first "))
    study = optuna.load_study(study_name="first", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(runs / "first" / "study.journal"))))
    counts = {s: sum(t.state == s for t in study.trials) for s in TrialState}
    assert first.split()[1] == "8"
    assert first.split()[2] == f"{counts[TrialState.COMPLETE]}/0/{counts[TrialState.FAIL]}/0/0"
    assert f"loss {study.best_value:.6g}" in first and "idle" in first
    assert any(line.startswith("second ") for line in lines)
    assert main(["ls", database]) == 0
    out = capsys.readouterr().out
    assert "alpha" in out and "beta" in out
    assert main(["ls", str(tmp_path)]) == 0
    assert "no studies in" in capsys.readouterr().out
    assert "is not a directory" in _fails(["ls", str(tmp_path / "nowhere")], capsys)


def test_trials_exports_csv_and_json(runs, capsys, tmp_path):
    assert main(["trials", str(runs / "first")]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [int(r["trial"]) for r in rows] == list(range(8))
    assert {"state", "loss", "x", "act", "duration_s", "epochs", "error", "model"} <= set(rows[0])
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert all(r["error"] == "ValueError: x too large" and r["loss"] == "" for r in failed)
    out = tmp_path / "trials.json"
    assert main(["trials", str(runs / "first" / "study.journal"), "--format", "json", "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data) == 8 and data[0]["trial"] == 0 and isinstance(data[0]["x"], float)


def test_best_prints_json_yaml_and_python(runs, database, capsys):
    study_dir = runs / "first"
    assert main(["best", str(study_dir)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert main(["best", str(study_dir), "--format", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == record
    assert main(["best", str(study_dir), "--format", "python"]) == 0
    code = capsys.readouterr().out
    namespace: dict = {}
    exec(code.split("from hyperbrace import evaluate")[0], namespace)
    assert namespace["best_run"] == record["params"] and f"trial {record['trial']}," in code
    assert main(["best", database, "--study", "beta"]) == 0
    assert json.loads(capsys.readouterr().out)["study"] == "beta"
    assert "holds 2 studies; pick one with --study: alpha, beta" in _fails(["best", database], capsys)


def test_best_of_a_study_without_completed_trials_says_so(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    study = optuna.create_study(study_name="failing", storage=url)
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    assert "has no completed trial yet" in _fails(["best", url], capsys)


def test_report_writes_the_html_beside_the_run_or_where_asked(runs, database, capsys, tmp_path, monkeypatch):
    assert main(["report", str(runs / "second")]) == 0
    html = runs / "second" / "report.html"
    assert capsys.readouterr().out.strip() == str(html) and "plotly" in html.read_text()[:200_000].lower()
    monkeypatch.chdir(tmp_path)
    assert main(["report", database, "--study", "alpha"]) == 0
    assert (tmp_path / "alpha.report.html").is_file()
    capsys.readouterr()
    assert "is a directory" in _fails(["report", str(runs / "second"), "-o", str(tmp_path)], capsys)


def test_read_only_commands_never_create_storage(tmp_path, capsys):
    missing_db = tmp_path / "nothing.db"
    for command in ("show", "trials", "best", "report", "dashboard", "rm"):
        err = _fails([command, f"sqlite:///{missing_db}"], capsys)
        assert "there is no database file" in err, command
        err = _fails([command, str(tmp_path / "no-run")], capsys)
        assert "is not a run directory" in err, command
        assert "give the search to read" in _fails([command], capsys)
    empty = tmp_path / "empty.db"
    import sqlite3

    sqlite3.connect(empty).close()
    assert "holds no Optuna studies" in _fails(["ls", f"sqlite:///{empty}"], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    assert empty.stat().st_size == 0  # not even Optuna's tables were created


def test_rm_asks_first_and_deletes_the_run_directory(tmp_path):
    minimize(model, max_evals=2, directory=tmp_path, study_name="doomed", show_progress=False)
    run_dir = tmp_path / "doomed"
    command = [sys.executable, "-m", "hyperbrace.cli", "rm", str(run_dir)]
    kept = subprocess.run(command, input="n\n", capture_output=True, text=True, env=_env(), timeout=120)
    assert kept.returncode == 1 and "Delete study 'doomed' (2 trials)" in kept.stderr and run_dir.is_dir()
    gone = subprocess.run(command, input="y\n", capture_output=True, text=True, env=_env(), timeout=120)
    assert gone.returncode == 0 and "deleted study 'doomed'" in gone.stderr and not run_dir.exists()


def test_rm_deletes_one_study_of_a_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'two.db'}"
    for name in ("keep", "drop"):
        optuna.create_study(study_name=name, storage=url)
    assert main(["rm", url, "--study", "drop", "--yes"]) == 0
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["keep"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dashboard_serves_the_run_in_optuna_dashboard(runs):
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "hyperbrace.cli", "dashboard", str(runs / "first"),
                               "--port", str(port)], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240  # about 2 s on an idle machine; minutes with 25 processes per core
        while True:
            assert server.poll() is None, server.communicate()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    studies = json.loads(response.read())
                break
            except OSError:
                assert time.monotonic() < deadline, "optuna-dashboard did not answer within 240 s"
                time.sleep(0.5)
        assert [s["study_name"] for s in studies["study_summaries"]] == ["first"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_dashboard_without_optuna_dashboard_gives_the_install_command(runs):
    blocked = ("import sys; sys.modules['optuna_dashboard'] = None; from hyperbrace.cli import main; "
               f"sys.exit(main(['dashboard', {str(runs / 'first')!r}]))")
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 1 and "pip install optuna-dashboard==" in done.stderr
