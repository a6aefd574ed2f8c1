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
    assert lines[0].split()[:4] == ["study", "versions", "trials", "ok/pruned/fail/run/wait"]
    first = next(line for line in lines if line.startswith("first "))
    study = optuna.load_study(study_name="first", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(runs / "first" / "study.journal"))))
    counts = {s: sum(t.state == s for t in study.trials) for s in TrialState}
    assert first.split()[1:3] == ["1", "8"]
    assert first.split()[3] == f"{counts[TrialState.COMPLETE]}/0/{counts[TrialState.FAIL]}/0/0"
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


# -- a study whose space changed twice: three versions (hyperbrace.versions), on a journal and on SQLite ----------------

def wide():
    x = {{uniform(-4, 4)}}
    return (x - 1) ** 2


def narrowed():  # version 2: the range narrowed (the trials inside it are reused) and a template added
    x = {{uniform(0, 2)}}
    y = {{uniform(0, 1)}}
    value = (x - 1) ** 2 + y  # "score" for the maximize() fixture; the model is saved: version 3 reuses some files
    return {"loss": value, "score": value, "model": {"x": x, "y": y}}


def halved():  # version 3: y's range halved
    x = {{uniform(0, 2)}}
    y = {{uniform(0, 0.5)}}
    return (x - 1) ** 2 + y


def _three_versions(search, **where) -> list:
    """Versions 1, 2 and 3 of study "v" (6, 3 and 3 trials of their own); the results of each search."""
    from hyperbrace.versions import SpaceChanged

    options = {"study_name": "v", "show_progress": False, **where}
    results = [search(wide, max_evals=6, seed=0, **options)]
    for number, model in ((2, narrowed), (3, halved)):
        with pytest.warns(SpaceChanged):
            results.append(search(model, max_evals=3, seed=number, **options))
    return results


@pytest.fixture(scope="module")
def versioned(tmp_path_factory):
    directory = tmp_path_factory.mktemp("versioned")
    return directory, _three_versions(minimize, directory=directory)


@pytest.fixture(scope="module")
def versioned_db(tmp_path_factory):
    """The same three versions in SQLite, maximized (the listing shows the score as returned, not the negated value
    the study stores), beside another study."""
    directory = tmp_path_factory.mktemp("versioned-db")
    url = f"sqlite:///{directory / 'versions.db'}"
    optuna.create_study(study_name="other", storage=url).add_trial(optuna.trial.create_trial(value=3.0))
    return url, _three_versions(hyperbrace.maximize, storage=url, directory=directory, metric="score")


def test_ls_shows_a_versioned_study_once_and_each_version_on_request(versioned, versioned_db, capsys):
    from hyperbrace.budget import may_be_best

    directory, results = versioned
    studies = [r.study for r in results]
    own = [[t for t in s.trials if "hb.reused_from" not in t.user_attrs] for s in studies]
    assert [len(o) for o in own] == [6, 3, 3] and len(results[2].reused) > 0
    assert main(["ls", str(directory)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2  # the header and one line for the study: its versions are not studies of their own
    study, versions, trials, states, _, best, *_ = lines[1].split()
    complete = sum(t.state == TrialState.COMPLETE for o in own for t in o)
    assert (study, versions, trials, states) == ("v", "3", "12", f"{complete}/0/0/0/0")
    everything = [t for s in studies for t in s.trials]
    assert float(best) == pytest.approx(min(t.value for t in everything if may_be_best(t)), rel=1e-5)
    assert main(["ls", str(directory), "--versions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[2:]] == [["v", "v1", "6"], ["v@v2", "v2", "3"], ["v@v3", "v3", "3"]]
    assert all(line.startswith("  v") for line in lines[2:])  # indented under their study
    url, results = versioned_db
    assert main(["ls", url, "--versions"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[1:]] == [
        ["other", "1", "1"], ["v", "3", "12"], ["v", "v1", "6"], ["v@v2", "v2", "3"], ["v@v3", "v3", "3"]]
    v3 = lines[-1].split()
    assert v3[4:6] == ["score", f"{results[2].versions[2].best_loss * -1:.6g}"]  # the score as returned, not negated


def test_the_report_of_a_versioned_study_lists_its_versions_and_marks_reused_trials(versioned, capsys, tmp_path):
    directory, results = versioned
    latest = results[2]
    assert main(["report", str(directory / "v"), "-o", str(tmp_path / "latest.html")]) == 0
    html = (tmp_path / "latest.html").read_text()
    assert "hyperbrace report: v@v3" in html and "Version 3 of study &#x27;v&#x27; (the latest of 3)" in html
    versions = html[html.index('id="versions-table"'):].split("</table>")[0]
    assert versions.count("<tr") == 4 and "y: range changed" in versions and "x: range changed" in versions
    assert '<tr class="current"><td>3 (this report)</td><td>v@v3</td><td>3</td>' in versions
    table = html[html.index('id="trials-table"'):].split("</table>")[0]
    marks = [label for t in latest.study.trials if (label := hyperbrace.display.trial_label(t)) != str(t.number)]
    assert len(marks) == len(latest.reused) > 0 and all(f'<td title="{m}">{m}</td>' in table for m in marks)
    assert table.count('class="COMPLETE reused"') == len(marks) and "<th onclick=\"hbSort(this)\">reused from</th>" in table
    # The best is one this version may call its best: never a reused trial that lacks y (prior knowledge only).
    best = latest.best_trial
    label = hyperbrace.display.trial_label(best)
    assert f"(trial {label}" in html and f"trial {label}" in html.split('id="best-code"')[1][:200]
    partial = sum(t.state == TrialState.COMPLETE and not hyperbrace.budget.may_be_best(t) for t in latest.study.trials)
    assert partial > 0 and f"({partial} reused trials without every parameter of this space left out)" in html
    assert f", and {len(latest.reused)} reused from earlier versions)" in latest._repr_html_()
    # result.report() of an earlier version: the same sections, and it says which version it is.
    html = results[1].report(tmp_path / "v2.html").read_text()
    assert "Version 2 of study &#x27;v&#x27; (not the latest: version 3 is &#x27;v@v3&#x27;)" in html
    assert '<tr class="current"><td>2 (this report)</td>' in html and html.count('class="COMPLETE reused"') > 0


def test_study_names_its_latest_version_and_name_at_vk_one_version(versioned, capsys):
    directory, results = versioned
    run = str(directory / "v")
    bests = {}
    for study in (None, "v", "v@v1", "v@v2", "v@v3"):
        assert main(["best", run, "--format", "json", *(["--study", study] if study else [])]) == 0
        bests[study] = json.loads(capsys.readouterr().out)
    assert bests[None] == bests["v"] == bests["v@v3"]  # the study's name means its latest version, as with none
    assert bests["v@v1"] != bests["v@v3"] and set(bests["v@v1"]) != set(bests["v@v3"])  # version 1 had no y
    assert "there is no study 'v@v7'" in _fails(["best", run, "--study", "v@v7"], capsys)


def test_rm_deletes_one_version_or_the_study_with_all_its_versions(versioned, tmp_path, capsys, monkeypatch):
    import shutil

    source, _ = versioned
    run_dir = tmp_path / "v"
    shutil.copytree(source / "v", run_dir)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(run_dir / "study.journal")))
    kept_reused = optuna.load_study(study_name="v@v3", storage=storage).trials
    assert (run_dir / "v2" / "logs").is_dir()
    # A middle version: allowed (the later one's reused trials are copies), and said so.
    assert main(["rm", str(run_dir), "--study", "v@v2", "--yes"]) == 0
    err = capsys.readouterr().err
    assert "deleted version 2 of study 'v', 'v@v2' (3 trials" in err and "Later versions keep the trials" in err
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(run_dir / "study.journal")))
    assert sorted(s.study_name for s in storage.get_all_studies()) == ["v", "v@v3"]
    assert not (run_dir / "v2" / "logs").exists() and (run_dir / "v3").is_dir() and (run_dir / "logs").is_dir()
    files = [t.user_attrs["hb.model"] for t in kept_reused if str(t.user_attrs.get("hb.model")).startswith("v2/")]
    assert files and all((run_dir / f).is_file() for f in files)  # version 3's reused trials still load their models
    assert sorted(p.relative_to(run_dir).as_posix() for p in (run_dir / "v2").rglob("*.*")) == sorted(files)
    assert len(optuna.load_study(study_name="v@v3", storage=storage).trials) == len(kept_reused)
    # The whole study: the prompt lists every version left, with its trials; "n" keeps everything.
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert main(["rm", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert "Delete study 'v' (2 versions, 9 trials" in err and "version 1: 'v' (6 trials)" in err
    assert "version 3: 'v@v3' (3 trials, " in err and run_dir.is_dir()
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert main(["rm", str(run_dir)]) == 0 and not run_dir.exists()


def test_rm_of_a_versioned_study_in_a_database(versioned_db, tmp_path, capsys):
    import shutil

    source, _ = versioned_db
    copy = tmp_path / "copy.db"
    shutil.copy(source.removeprefix("sqlite:///"), copy)
    url = f"sqlite:///{copy}"
    assert "there is no study 'v@v9'" in _fails(["rm", url, "--study", "v@v9", "--yes"], capsys)
    assert "holds 2 studies; pick one with --study: other, v" in _fails(["rm", url, "--yes"], capsys)
    assert main(["rm", url, "--study", "v@v3", "--yes"]) == 0  # the latest version: the study goes on from v2
    assert "Later versions" not in capsys.readouterr().err
    assert sorted(s.study_name for s in optuna.get_all_study_summaries(url)) == ["other", "v", "v@v2"]
    assert main(["rm", url, "--study", "v", "--yes"]) == 0  # the study's name: every version
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["other"]
