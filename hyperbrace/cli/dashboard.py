"""``hyperbrace dashboard RUN [--port 8080]``: open the search in optuna-dashboard (live, in the browser).

optuna-dashboard reads hyperbrace's studies as they are (they are Optuna studies, on a journal file or a
database): trials, their parameters, intermediate values, importances, updated while the search runs.
"""

from __future__ import annotations

import argparse
import sys

import optuna

from hyperbrace.cli._target import add_arguments, open_target

__all__ = ["register", "INSTALL"]

INSTALL = "pip install optuna-dashboard==0.21.0"


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dashboard = commands.add_parser(
        "dashboard", help="serve the search in optuna-dashboard (a live web UI)",
        description=f"Start optuna-dashboard on the search's storage (it must be installed: {INSTALL}). "
                    "Stop it with Ctrl-C.",
    )
    add_arguments(dashboard)
    dashboard.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8080, help="the port (default 8080)")
    dashboard.set_defaults(run=_dashboard)


def _dashboard(args: argparse.Namespace) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    target = open_target(args)
    try:
        import optuna_dashboard
    except ImportError:
        print(f"hyperbrace dashboard: optuna-dashboard is not installed; install it with:\n    {INSTALL}",
              file=sys.stderr)
        return 1
    print(f"optuna-dashboard on http://{args.host}:{args.port}/dashboard/ for {target.description} "
          "(Ctrl-C stops it)", file=sys.stderr, flush=True)
    optuna_dashboard.run_server(target.storage, host=args.host, port=args.port)
    return 0
