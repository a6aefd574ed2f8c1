"""``hyperbrace trials RUN [--format csv|json] [-o FILE]``: every trial, one row each, for a spreadsheet or a script."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys

import optuna

from hyperbrace.cli._target import add_arguments, open_target

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    trials = commands.add_parser(
        "trials", help="export every trial as CSV or JSON",
        description="Print every trial (number, state, loss, each hyperparameter's real value, duration in "
                    "seconds, epochs, error, saved model, start time, worker) as CSV (default) or JSON.",
    )
    add_arguments(trials)
    trials.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (default) or json")
    trials.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of printing")
    trials.set_defaults(run=_trials)


def _trials(args: argparse.Namespace) -> int:
    from hyperbrace.htmlreport.data import trial_rows

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    target = open_target(args)
    rows = trial_rows(target.load(), target.directory)
    if args.format == "json":
        text = json.dumps(rows, indent=1, default=repr) + "\n"
    else:
        buffer = io.StringIO()
        columns = list(rows[0]) if rows else ["trial", "state"]
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        text = buffer.getvalue()
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        print(f"wrote {len(rows)} trials to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
