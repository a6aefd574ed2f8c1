"""A worker process: runs a search's trials until its budget is used up.

``minimize(n_jobs=N)`` starts N of these as ``python -m hyperbrace._worker PAYLOAD INDEX --error-file FILE
--parent-pid PID``; ``hyperbrace worker`` runs the same loop (:func:`run_plan`) in its own process. PAYLOAD holds
the parent's import path, then the cloudpickled :class:`~hyperbrace.search.SearchPlan`.

Exit status: 0 when the budget (or the deadline) is used up; 3 after writing FILE, a JSON report of an error that
stops the whole search (the parent raises it); 130 when interrupted (SIGINT, SIGTERM, or the parent died), after the
running trial was failed and queued again; 75 between two trials when its memory grew past the bound
(:mod:`hyperbrace.recycle`), and the parent starts a fresh worker in its place; anything else is a crash, and the
parent replaces the worker.
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import json
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_REPORTED_ERROR = 3
EXIT_INTERRUPTED = 130


def interrupt_on_sigterm() -> None:
    """SIGTERM (Slurm's scancel, Kubernetes evicting a pod) ends the worker as Ctrl-C does: its running trial is
    failed and queued again at once, instead of waiting for the heartbeat to expire."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def _exit_with_parent(parent_pid: int) -> None:
    """Interrupt this worker when the process that started it dies (so workers never outlive a killed search)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(60.0)  # a trial stuck in native code gets a minute to notice, then the process goes
        os._exit(EXIT_INTERRUPTED)

    threading.Thread(target=watch, daemon=True, name="hyperbrace-parent-watch").start()


def write_report(path: str | None, error: BaseException) -> None:
    """Write ``error`` where the parent looks for it (TemplateError keeps its file, line and template text)."""
    if not path:
        return
    from hyperbrace.template import TemplateError

    report: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, TemplateError):
        report = {
            "type": "TemplateError", "message": error.message, "filename": error.filename, "lineno": error.lineno,
            "text": error.text, "function": error.function,
        }
    elif type(error).__name__ not in ("TrialFailedError", "StorageFullError"):
        report["message"] = "".join(traceback.format_exception(error))
    Path(path).write_text(json.dumps(report))


def prepare(plan: Any, run_dir: Path | None = None) -> Any:
    """The plan as a worker runs it: trial output goes to the logs only, and ``run_dir`` (this machine's, for
    ``hyperbrace worker``) replaces the chief's."""
    settings = dataclasses.replace(plan.settings, echo_output=False)
    if run_dir is not None:
        settings = dataclasses.replace(settings, run_dir=run_dir)
        plan = dataclasses.replace(plan, storage=dataclasses.replace(plan.storage, run_dir=run_dir))
    return dataclasses.replace(plan, settings=settings)


def run_plan(
    plan: Any, index: int, error_file: str | None = None, on_outcome: Any = None, recycle: bool = False
) -> int:
    """Run ``plan``'s trials in this process; returns the exit status (see the module's docstring).

    With ``recycle``, the process leaves between two trials once its memory grew past the bound
    (:data:`~hyperbrace.recycle.EXIT_RECYCLE`): only for a worker whose parent starts the next one.
    """
    import optuna

    from hyperbrace.recycle import EXIT_RECYCLE, MemoryWatch, Recycle, max_growth_mb

    from hyperbrace.journal import StorageFullError, disk_full_error, is_disk_full
    from hyperbrace.search import TrialFailedError
    from hyperbrace.template import TemplateError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        plan.load_data()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (Exception, SystemExit) as exc:  # noqa: BLE001  (data() failing fails every trial: report, no retry)
        write_report(error_file, exc)
        if not error_file:
            raise
        return EXIT_REPORTED_ERROR
    if recycle:
        on_outcome = MemoryWatch(max_growth_mb(), then=on_outcome)
    try:
        plan.run_trials(index, on_outcome=on_outcome)
    except Recycle as reason:
        print(f"[hyperbrace] worker {index}: {reason}; a fresh process takes over", file=sys.stderr)
        return EXIT_RECYCLE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        # Every worker would fail alike: the parent stops the search and says so.
        write_report(error_file, exc if isinstance(exc, StorageFullError) else disk_full_error(plan.storage.run_dir))
        if not error_file:
            raise
        return EXIT_REPORTED_ERROR
    except (TemplateError, TrialFailedError) as exc:
        write_report(error_file, exc)
        if not error_file:
            raise
        return EXIT_REPORTED_ERROR
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hyperbrace._worker", description=__doc__)
    parser.add_argument("payload")
    parser.add_argument("index", type=int)
    parser.add_argument("--error-file")
    parser.add_argument("--parent-pid", type=int)
    args = parser.parse_args(argv)
    # The parent stops workers with SIGINT. A search started in the background of a shell (`python search.py &`)
    # passes SIGINT down as ignored, and Python then never raises KeyboardInterrupt: handle it explicitly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupt_on_sigterm()
    # A crash (SIGSEGV in native code, an abort) dumps every thread's stack: into the trial's log while a trial
    # runs (hyperbrace.trial), into this worker's log (its stderr) otherwise; the parent shows both.
    faulthandler.enable(all_threads=True)
    if args.parent_pid:
        _exit_with_parent(args.parent_pid)
    try:
        with open(args.payload, "rb") as file:
            parent_path = pickle.load(file)
            # The parent's import path first, so its modules (and a package under development) import here.
            sys.path[:] = parent_path + [p for p in sys.path if p not in parent_path]
            import cloudpickle  # noqa: F401  (the plan was written by cloudpickle; plain pickle reads it with it)

            plan = pickle.load(file)
        plan = prepare(plan)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (Exception, SystemExit) as exc:  # noqa: BLE001
        write_report(args.error_file, exc)
        return EXIT_REPORTED_ERROR
    return run_plan(plan, args.index, args.error_file, recycle=True)


if __name__ == "__main__":
    sys.exit(main())
