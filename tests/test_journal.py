"""Fault injection on the journal file: a partial last record, a damaged line, a full disk, a stale lock.

Every test here works on real files (and, for the full disk, a real tmpfs) and real processes; about 15 s in all.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hyperbrace import minimize, uniform  # noqa: F401  (uniform is what the templates call)
from hyperbrace.cli import main
from hyperbrace.journal import (
    FOREIGN_STALE_S,
    JournalDamagedError,
    JournalRepairedWarning,
    StorageFullError,
    open_journal,
)

REPO = Path(__file__).resolve().parents[1]


def quadratic():
    x = {{uniform(-1, 1)}}
    return x * x


def search(directory: Path, max_evals: int, **kwargs):
    return minimize(quadratic, max_evals=max_evals, study_name="j", directory=directory, show_progress=False,
                    seed=0, keep_models=0, **kwargs)


def optuna_trials(journal: Path) -> list[optuna.trial.FrozenTrial]:
    """The trials as Optuna's own journal backend reads them (what optuna-dashboard would show)."""
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    return optuna.load_study(study_name="j", storage=storage).get_trials()


def completed(trials) -> dict[int, float]:
    return {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}


def test_a_partial_last_record_is_cut_off_kept_aside_and_the_search_continues(tmp_path):
    search(tmp_path, 4)
    journal = tmp_path / "j" / "study.journal"
    before = completed(optuna_trials(journal))
    # A process killed while writing a record: the record's first half is on disk, without its newline.
    partial = b'{"op_code":5,"worker_id":"dead","trial_id":3,"user_attr":{"hb.wor'
    with open(journal, "ab") as f:
        f.write(partial)
    with pytest.warns(JournalRepairedWarning, match="partial record") as caught:
        result = search(tmp_path, 7)
    side = Path(str(caught[0].message).split("kept in ")[1].split(". ")[0])
    assert side.parent == journal.parent and side.read_bytes() == partial
    trials = optuna_trials(journal)  # Optuna's own reader agrees, after further appends
    assert len(trials) == 7 and all(t.state == TrialState.COMPLETE for t in trials)
    assert {n: v for n, v in completed(trials).items() if n in before} == before
    assert len(result.trials) == 7


def test_a_whole_record_missing_only_its_newline_is_kept(tmp_path):
    search(tmp_path, 2)
    journal = tmp_path / "j" / "study.journal"
    content = journal.read_bytes()
    journal.write_bytes(content[:-1])  # the last record's newline never reached the disk
    with warnings.catch_warnings():
        warnings.simplefilter("error", JournalRepairedWarning)
        storage = open_journal(journal)
    assert journal.read_bytes() == content
    assert len(optuna.load_study(study_name="j", storage=storage).trials) == 2


def test_a_damaged_line_names_the_file_and_line_and_repair_salvages_every_record(tmp_path, capsys):
    search(tmp_path, 5)
    run = tmp_path / "j"
    journal = run / "study.journal"
    before = completed(optuna_trials(journal))
    lines = journal.read_bytes().splitlines(keepends=True)
    # Line 6: a partial write with a whole record glued behind it (what Optuna's backend does after a crash);
    # line 9: bytes that are not even text.
    lines[5] = b'{"op_code":5,"worker_id":"x","tri' + lines[5]
    lines.insert(8, b"\xff\xfe garbage \x00\n")
    journal.write_bytes(b"".join(lines))
    damaged = journal.read_bytes()

    with pytest.raises(JournalDamagedError) as error:
        search(tmp_path, 6)
    message = str(error.value)
    assert f"{journal}, line 6" in message and f"hyperbrace repair {run}" in message
    assert main(["show", str(run)]) == 1
    assert "line 6" in capsys.readouterr().err

    assert main(["repair", str(run)]) == 0
    report = capsys.readouterr().out
    assert "repaired" in report and "damaged lines: 6, 9" in report and "1 recovered" in report
    backups = list(run.glob("study.journal.before-repair-*"))
    sides = list(run.glob("study.journal.damaged-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == damaged
    assert len(sides) == 1 and b"garbage" in sides[0].read_bytes()
    assert completed(optuna_trials(journal)) == before  # every trial, with its result
    assert main(["repair", str(run)]) == 0 and "nothing to repair" in capsys.readouterr().out
    result = search(tmp_path, 8)
    assert len(result.trials) == 8 and all(t.state == "COMPLETE" for t in result.trials)


def _mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a tmpfs at ``path``; the reason it cannot be done otherwise."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "mounting a small tmpfs needs root and mount(8)"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        return f"this machine does not allow mounting a tmpfs: {done.stderr.strip()}"
    return None


def test_a_full_disk_stops_the_search_clearly_and_a_resume_keeps_every_trial(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    reason = _mount_tmpfs(disk, "64k")
    if reason:
        pytest.skip(reason)
    try:
        with pytest.raises(StorageFullError, match="is full .*free some space and run the same search again"):
            search(disk, 2000)
        journal = disk / "j" / "study.journal"
        before = completed(optuna_trials(journal))
        assert len(before) > 5
        assert journal.read_bytes().endswith(b"\n")  # the failed append was cut back: no partial record
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)  # space is freed
        with warnings.catch_warnings():
            warnings.simplefilter("error", JournalRepairedWarning)  # nothing to repair
            result = search(disk, len(before) + 5)
        after = completed(optuna_trials(journal))
        assert {n: v for n, v in after.items() if n in before} == before
        assert len(after) >= len(before) + 4 and len(result.trials) >= len(before) + 5
    finally:
        subprocess.run(["umount", str(disk)], check=False)


LOCK_AND_DIE = """
import os, signal, sys
from hyperbrace.journal import JournalLock
JournalLock(sys.argv[1]).acquire()
print("locked", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_lock_left_by_a_killed_process_does_not_stall_the_next_run(tmp_path):
    search(tmp_path, 1)
    journal = tmp_path / "j" / "study.journal"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    died = subprocess.run([sys.executable, "-c", LOCK_AND_DIE, str(journal)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert died.returncode == -signal.SIGKILL and "locked" in died.stdout
    assert os.path.islink(f"{journal}.lock")  # Optuna's lock link, left behind
    started = time.monotonic()
    search(tmp_path, 3)
    assert time.monotonic() - started < 10  # Optuna alone waits 30 s before breaking it
    assert not os.path.lexists(f"{journal}.lock")


def test_a_lock_link_left_by_another_tool_is_broken_after_a_few_seconds(tmp_path):
    search(tmp_path, 1)
    journal = tmp_path / "j" / "study.journal"
    link = f"{journal}.lock"
    os.symlink(journal, link)  # what Optuna's own lock leaves when its process is killed
    old = time.time() - FOREIGN_STALE_S - 1
    os.utime(link, (old, old), follow_symlinks=False)
    started = time.monotonic()
    search(tmp_path, 2)
    assert time.monotonic() - started < 10
    assert not os.path.lexists(link)


def test_a_lock_held_by_a_live_process_is_waited_for(tmp_path):
    journal = tmp_path / f"{uuid.uuid4().hex}.journal"
    from hyperbrace.journal import JournalLock

    holder = JournalLock(str(journal))
    holder.acquire()
    waiter = subprocess.Popen(
        [sys.executable, "-c", "import sys; from hyperbrace.journal import JournalLock; "
                               "JournalLock(sys.argv[1]).acquire(); print('got it')", str(journal)],
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])),
        stdout=subprocess.PIPE, text=True,
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(timeout=2)
    finally:
        holder.release()
    assert waiter.communicate(timeout=30)[0].strip() == "got it"
