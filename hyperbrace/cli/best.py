"""``hyperbrace best RUN [--format json|yaml|python]``: the best configuration, to paste elsewhere."""

from __future__ import annotations

import argparse

import optuna

from hyperbrace.cli._target import UsageError, add_arguments, open_target
from hyperbrace.export import FORMATS, best_as

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    best = commands.add_parser(
        "best", help="print the best configuration as JSON, YAML or Python",
        description="Print the best trial's hyperparameters (their real values, and the engine's values that "
                    "hyperbrace.evaluate() takes) as JSON (default), YAML, or Python code to paste into a script.",
    )
    add_arguments(best)
    best.add_argument("--format", choices=FORMATS, default="json", help="json (default), yaml or python")
    best.set_defaults(run=_best)


def _best(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_target(args).load()
    try:
        print(best_as(study, args.format))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return 0
