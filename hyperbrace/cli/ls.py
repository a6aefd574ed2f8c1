"""``hyperbrace ls [DIR | URL]``: every study under a directory (or in a database), one line each."""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hyperbrace.cli._target import DEFAULT_DIRECTORY, UsageError, open_storage

__all__ = ["register", "study_lines"]

#: A study with a running trial whose worker we cannot check (another host) counts as running if it was active
#: this recently.
RECENT_S = 600


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ls = commands.add_parser(
        "ls", help="list the studies under a directory (default hyperbrace-runs) or in a database",
        description="List every study kept under DIR (its run directories' journal files) or in a database: its "
                    "trials by state, best loss, last activity, and whether it is running now.",
    )
    ls.add_argument("where", nargs="?", default=DEFAULT_DIRECTORY, metavar="DIR",
                    help=f"a directory of run directories (default {DEFAULT_DIRECTORY}), a run directory, or a "
                         "database URL")
    ls.set_defaults(run=_ls)


def _journals(directory: Path) -> list[Path]:
    found = [directory / "study.journal"] if (directory / "study.journal").is_file() else []
    found += sorted(directory.glob("*/study.journal")) + sorted(directory.glob("*/*/study.journal"))
    return found


def _status(trials: list[optuna.trial.FrozenTrial], last: datetime.datetime | None) -> str:
    from hyperbrace.recovery import is_worker_alive

    running = [t for t in trials if t.state == TrialState.RUNNING]
    if not running:
        return "idle"
    alive = [is_worker_alive(str(t.user_attrs.get("hb.worker", ""))) if t.user_attrs.get("hb.worker") else None
             for t in running]
    if any(a is True for a in alive):
        return "running"
    recent = last is not None and (datetime.datetime.now() - last).total_seconds() < RECENT_S
    if any(a is None for a in alive) and recent:
        return "running"
    return "stale"  # RUNNING trials whose process is gone: the next run (or worker) fails and retries them


def study_lines(storage: optuna.storages.BaseStorage, where: str) -> list[dict[str, Any]]:
    """One summary per study in ``storage``."""
    from hyperbrace.metric import metric_of

    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        counts = {s: sum(t.state == s for t in trials) for s in TrialState}
        times = [d for t in trials for d in (t.datetime_complete, t.datetime_start) if d is not None]
        last = max(times) if times else None
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        metric = metric_of(study)
        best = metric.show(min(t.value for t in done)) if done else None  # type: ignore[type-var]
        rows.append({
            "study": summary.study_name, "trials": len(trials),
            "states": "/".join(str(counts[s]) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                                       TrialState.RUNNING, TrialState.WAITING)),
            "best": "-" if best is None else f"{metric.name} {best:.6g}",
            "last activity": last.isoformat(sep=" ", timespec="seconds") if last else "-",
            "status": _status(trials, last), "where": where,
        })
    return rows


def _ls(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows: list[dict[str, Any]] = []
    if "://" in args.where:
        storage, _, description, _ = open_storage(argparse.Namespace(run_path=args.where, storage=None))
        rows = study_lines(storage, description)
    else:
        directory = Path(args.where)
        if not directory.is_dir():
            raise UsageError(f"{directory} is not a directory (give the folder holding the run directories, "
                             f"by default {DEFAULT_DIRECTORY}, or a database URL)")
        from hyperbrace.journal import open_journal

        for journal in _journals(directory):
            storage = open_journal(journal, repair=False)
            rows += study_lines(storage, str(journal.parent))
    if not rows:
        print(f"no studies in {args.where}")
        return 0
    columns = ["study", "trials", "states", "best", "last activity", "status", "where"]
    header = {c: c for c in columns}
    header["states"] = "ok/pruned/fail/run/wait"
    table = [header, *({c: str(r[c]) for c in columns} for r in rows)]
    widths = {c: max(len(row[c]) for row in table) for c in columns}
    for row in table:
        print("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())
    return 0
