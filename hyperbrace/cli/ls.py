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
                    "trials by state, best loss, last activity, and whether it is running now. A study whose "
                    "{{...}} space changed went on as new versions (name@v2, ...): it is one line, its versions' "
                    "trials summed; --versions lists each version under it.",
    )
    ls.add_argument("where", nargs="?", default=DEFAULT_DIRECTORY, metavar="DIR",
                    help=f"a directory of run directories (default {DEFAULT_DIRECTORY}), a run directory, or a "
                         "database URL")
    ls.add_argument("--versions", action="store_true",
                    help="also list each version of a study whose space changed (hyperbrace.versions), indented "
                         "under it, with its own trials (the trials it reused are counted where they ran)")
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


def _summary(name: str, trials: list[optuna.trial.FrozenTrial], metric: Any, where: str) -> dict[str, Any]:
    """One line of the listing for ``trials`` (one version's, or all of a study's versions' together)."""
    from hyperbrace.budget import may_be_best, used_trials

    used = used_trials(trials)  # as max_evals counts them: reused copies and failed runs retried since left out
    counts = {s: sum(t.state == s for t in used) for s in TrialState}
    times = [d for t in used for d in (t.datetime_complete, t.datetime_start) if d is not None]
    last = max(times) if times else None
    done = [t.value for t in trials if may_be_best(t)]
    best = metric.show(min(done)) if done else None
    return {
        "study": name, "trials": len(used),
        "states": "/".join(str(counts[s]) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                                   TrialState.RUNNING, TrialState.WAITING)),
        "best": "-" if best is None else f"{metric.name} {best:.6g}",
        "last activity": last.isoformat(sep=" ", timespec="seconds") if last else "-",
        "status": _status(used, last), "where": where,
    }


def study_lines(storage: optuna.storages.BaseStorage, where: str, versions: bool = False) -> list[dict[str, Any]]:
    """One summary per study in ``storage``: the versions of a study (:mod:`hyperbrace.versions`) are one study,
    their trials summed (the reused copies not counted again), the best over all of them, running if any runs.
    With ``versions``, each version's own line follows its study's (its ``study`` indented).

    >>> import optuna
    >>> study = optuna.create_study(study_name="demo")
    >>> study.add_trial(optuna.trial.create_trial(value=0.25))
    >>> [(r["study"], r["trials"], r["states"], r["best"], r["versions"]) for r in study_lines(study._storage, "memory")]
    [('demo', 1, '1/0/0/0/0', 'loss 0.25', 1)]
    """
    from hyperbrace.metric import metric_of
    from hyperbrace.versions import grouped_studies, version_number

    rows = []
    for root, group in grouped_studies(storage).items():
        metric = metric_of(group[-1])  # a new version maximizes what the earlier ones did
        per_version = [storage.get_all_trials(frozen._study_id, deepcopy=False) for frozen in group]
        row = _summary(root, [t for trials in per_version for t in trials], metric, where)
        lines = [_summary(f"  {frozen.study_name}", trials, metric, where) for frozen, trials in zip(group, per_version)]
        statuses = {line["status"] for line in lines}
        row["status"] = next((s for s in ("running", "stale") if s in statuses), "idle")
        row["versions"] = len(group)
        rows.append(row)
        if versions and len(group) > 1:
            for frozen, line in zip(group, lines):
                line["versions"] = f"v{version_number(frozen)}"
                rows.append(line)
    return rows


def _ls(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows: list[dict[str, Any]] = []
    if "://" in args.where:
        storage, _, description, _ = open_storage(argparse.Namespace(run_path=args.where, storage=None))
        rows = study_lines(storage, description, args.versions)
    else:
        directory = Path(args.where)
        if not directory.is_dir():
            raise UsageError(f"{directory} is not a directory (give the folder holding the run directories, "
                             f"by default {DEFAULT_DIRECTORY}, or a database URL)")
        from hyperbrace.journal import open_journal

        for journal in _journals(directory):
            storage = open_journal(journal, repair=False)
            rows += study_lines(storage, str(journal.parent), args.versions)
    if not rows:
        print(f"no studies in {args.where}")
        return 0
    columns = ["study", "versions", "trials", "states", "best", "last activity", "status", "where"]
    header = {c: c for c in columns}
    header["states"] = "ok/pruned/fail/run/wait"
    table = [header, *({c: str(r[c]) for c in columns} for r in rows)]
    widths = {c: max(len(row[c]) for row in table) for c in columns}
    for row in table:
        print("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())
    return 0
