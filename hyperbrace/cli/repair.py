"""``hyperbrace repair RUN_DIR``: rewrite a damaged ``study.journal``, keeping every readable record.

See :func:`hyperbrace.journal.repair_journal`: the damaged bytes go to a side file and the journal as it was is
kept beside it. Stop the search's processes first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hyperbrace.cli._target import DEFAULT_DIRECTORY, UsageError

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    repair = commands.add_parser(
        "repair", help="rewrite a damaged study.journal, keeping every readable record",
        description="Rewrite a run directory's study.journal when a damaged line stops it from being read: every "
                    "readable record is kept (also one glued behind damaged bytes), the damaged bytes go to a side "
                    "file, and the journal as it was is kept beside it. Stop the search's processes first.",
    )
    repair.add_argument("run_path", metavar="RUN",
                        help="a run directory (hyperbrace-runs/<study>), its study.journal, or a study's name under "
                             "./hyperbrace-runs")
    repair.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from hyperbrace.journal import repair_journal

    path = Path(args.run_path)
    if not path.exists() and (Path(DEFAULT_DIRECTORY) / args.run_path).is_dir():
        path = Path(DEFAULT_DIRECTORY) / args.run_path
    journal = path if path.is_file() else path / "study.journal"
    if not journal.is_file():
        raise UsageError(f"{path} is not a run directory: it has no study.journal (databases need no repair here)")
    print(repair_journal(journal))
    return 0
