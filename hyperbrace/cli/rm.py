"""``hyperbrace rm RUN [--yes]``: delete a study (and its run directory), after asking."""

from __future__ import annotations

import argparse
import shutil
import sys

import optuna
from optuna.trial import TrialState

from hyperbrace.cli._target import UsageError, add_arguments, open_target

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rm = commands.add_parser(
        "rm", help="delete a study and its run directory (asks first)",
        description="Delete a study: for a run directory holding only this study, the whole directory (journal, "
                    "saved models, logs); for a database, the study's rows (its run directory too, if there is "
                    "one here). Asks for confirmation unless --yes is given.",
    )
    add_arguments(rm)
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask")
    rm.set_defaults(run=_rm)


def _rm(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    target = open_target(args)
    trials = target.load().get_trials(deepcopy=False)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    others = [s.study_name for s in optuna.get_all_study_summaries(target.storage, include_best_trial=False)
              if s.study_name != target.study_name]
    remove_dir = target.directory.is_dir() and (target.url is not None or not others)
    what = f"study {target.study_name!r} ({len(trials)} trials) in {target.description}"
    if remove_dir:
        what += f", and the directory {target.directory} (saved models, logs)"
    warning = f"\n  {running} of its trials are RUNNING: stop the search first." if running else ""
    if not args.yes:
        if not sys.stdin.isatty() and sys.stdin.closed:
            raise UsageError("cannot ask for confirmation here; add --yes")
        print(f"Delete {what}?{warning}", file=sys.stderr)
        try:
            answer = input("Type y to delete, anything else to keep it: ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("kept; nothing was deleted", file=sys.stderr)
            return 1
    if remove_dir and target.url is None:
        shutil.rmtree(target.directory)
    else:
        optuna.delete_study(study_name=target.study_name, storage=target.storage)
        if remove_dir:
            shutil.rmtree(target.directory)
    print(f"deleted {what}", file=sys.stderr)
    return 0
