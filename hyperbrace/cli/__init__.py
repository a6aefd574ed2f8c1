"""The ``hyperbrace`` command: one module per subcommand (``hyperbrace/cli/<command>.py``).

Each command module has ``register(commands)``, which adds its ``argparse`` subparser and sets ``run=`` to the
function that runs it (taking the parsed arguments, returning the exit status). A new command is a new module plus
its name in :data:`COMMANDS`. Commands that read a search share :mod:`hyperbrace.cli._target` (a run directory, a
journal file, or a database URL + study, opened without creating anything).

Example (the second machine of a two-machine search)::

    $ hyperbrace worker --storage postgresql://hb:secret@db.example/hb --study mnist.create_model --n-jobs 4
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import optuna

from hyperbrace.cli._target import UsageError
from hyperbrace.journal import JournalDamagedError, StorageFullError

__all__ = ["main", "COMMANDS"]

#: The subcommands, in the order ``hyperbrace --help`` lists them (each is the module ``hyperbrace.cli.<name>``).
COMMANDS = ("ls", "show", "trials", "best", "report", "dashboard", "rm", "worker", "repair")

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hyperbrace`` command line; returns its exit status.

    >>> import tempfile, optuna
    >>> from optuna.storages.journal import JournalFileBackend
    >>> run_dir = tempfile.mkdtemp()
    >>> journal = optuna.storages.JournalStorage(JournalFileBackend(run_dir + "/study.journal"))
    >>> study = optuna.create_study(study_name="demo", storage=journal)
    >>> study.add_trial(optuna.trial.create_trial(value=0.25, user_attrs={"hb.values": {"lr": 0.01}}))
    >>> main(["show", run_dir])  # doctest: +NORMALIZE_WHITESPACE
    Study 'demo': 1 trials (1 complete)
    trial loss lr
    ----- ---- ----
    0 0.25 0.01
    0
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted; the running trials were failed and queued again, so the search can continue",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as exc:
        parser.exit(2, f"hyperbrace {args.command}: error: {exc}\n")
        return 2
    except (JournalDamagedError, StorageFullError) as exc:  # they say what to do; a traceback would hide it
        print(f"hyperbrace {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyperbrace", description="Hyperparameter search with {{...}} templates: workers and reports.",
    )
    from hyperbrace import __version__

    parser.add_argument("--version", action="version", version=f"hyperbrace {__version__} (optuna {optuna.__version__})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"hyperbrace.cli.{name}").register(commands)
    return parser
