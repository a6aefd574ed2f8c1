"""``hyperbrace report RUN [-o report.html]``: write the search's HTML report (one file that opens offline)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

from hyperbrace.cli._target import UsageError, add_arguments, open_target

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    report = commands.add_parser(
        "report", help="write a search's HTML report (plots, every trial, failures, the best configuration)",
        description="Write one self-contained HTML file (it opens offline) with the optimization history, "
                    "importances, parallel coordinates, slices, learning curves, the timeline per worker, a sortable "
                    "table of every trial, the failures grouped by error, the best configuration as code, and the "
                    "search space. A running search's report is a snapshot: run the command again to refresh it.",
    )
    add_arguments(report)
    report.add_argument("-o", "--output", metavar="PATH",
                        help="where to write it (default: report.html in the run directory; for a database, "
                             "<study>.report.html here)")
    report.set_defaults(run=_report)


def _report(args: argparse.Namespace) -> int:
    from hyperbrace.htmlreport import require_report_libraries, write_report

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        require_report_libraries()
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    target = open_target(args)
    if args.output:
        output = Path(args.output)
    elif target.url is None:
        output = target.directory / "report.html"
    else:
        output = Path(f"{target.directory.name}.report.html")
    if output.is_dir():
        raise UsageError(f"-o {output} is a directory; give a file name, e.g. -o {output / 'report.html'}")
    path = write_report(target.load(), output, target.directory if target.directory.is_dir() else None,
                        target.description)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB; open it in a browser, no network needed)",
          file=sys.stderr)
    print(path)
    return 0
