"""``hyperbrace worker --storage URL|grpc://HOST:PORT|RUN_DIR --study NAME [--n-jobs N] [--gpus 0,1 | all]``

Join a running search from this machine: take and run trials until its budget is used up. The search's chief (the
script calling ``minimize``) stored its model and data functions in the study, with the framework variables it ran
with (``KERAS_BACKEND``, ...), so the worker needs only where the study is and its name, plus the same packages
(and the modules the model imports) as the chief. Start as many as you like, on as many machines. ``--storage``:

* a database URL (``postgresql://...``): the worker reads and writes the database itself;
* ``grpc://HOST:PORT``: the chief's gRPC proxy (``minimize(..., cluster=hyperbrace.launchers.Serve(port=PORT))``):
  no database credentials, no shared filesystem; the worker takes the chief's queued trials, and its models go
  home through the chief's artifact store;
* a run directory or its ``study.journal`` (a second terminal on the same machine).

Examples::

    $ hyperbrace worker --storage postgresql://hb:secret@db.example/hb --study mnist.create_model --n-jobs 4
    $ hyperbrace worker --storage grpc://chief.example:13000 --study mnist.create_model
    $ hyperbrace worker --storage hyperbrace-runs/mnist.create_model --study mnist.create_model
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import socket
import sys
import time
import zlib
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna

from hyperbrace.cli._target import UsageError

if TYPE_CHECKING:
    from hyperbrace.search import SearchPlan
    from hyperbrace.storage import RunStorage
    from hyperbrace.trial import TrialOutcome

__all__ = ["register"]

EXIT_ERROR = 1


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    worker = commands.add_parser(
        "worker", help="join a search kept in a database and run its trials",
        description="Join a search kept in a database (started by minimize(storage=URL, ...) on any machine) and "
                    "run its trials until its max_evals are used up. Needs the same Python packages, and the "
                    "modules the model function imports, as the machine that started the search.",
    )
    worker.add_argument("--storage", default=os.environ.get("HYPERBRACE_STORAGE"), metavar="URL",
                        required=not os.environ.get("HYPERBRACE_STORAGE"),
                        help="the search's database (postgresql://user:password@host/db), the chief's gRPC proxy "
                             "(grpc://host:port), or a run directory / its study.journal on this machine (default: "
                             "the environment variable HYPERBRACE_STORAGE, which keeps a password off the command "
                             "line)")
    worker.add_argument("--study", required=True, metavar="NAME", help="the study's name")
    worker.add_argument("--n-jobs", type=int, default=1, metavar="N",
                        help="worker processes on this machine (default 1: trials run in this process)")
    worker.add_argument("--gpus", metavar="IDS",
                        help="comma-separated GPU ids, or 'all': one worker process per GPU")
    worker.add_argument("--directory", default="hyperbrace-runs", metavar="DIR",
                        help="where this machine keeps the trials' logs and saved models (default hyperbrace-runs)")
    worker.add_argument("--wait", type=float, default=300.0, metavar="SECONDS",
                        help="how long to wait for the search to be started (default 300)")
    worker.add_argument("--plan-key-file", metavar="FILE",
                        help="the key the chief signed its plan with (default: the environment variable "
                             "HYPERBRACE_PLAN_KEY, else DIR/<study>/.plan-key); see docs/security.md")
    worker.add_argument("--allow-unsigned-plan", action="store_true",
                        help="run a plan published without a signature (only if you trust every writer of the "
                             "database: the plan is code this worker runs)")
    worker.set_defaults(run=_worker)


UsageError = UsageError



# -- worker ---------------------------------------------------------------------------------------------------------
def _worker(args: argparse.Namespace) -> int:
    from hyperbrace import _worker as worker_process
    from hyperbrace.executor import WorkerError, published_plan, run_workers, visible_gpus
    from hyperbrace.plan_signing import PlanAuthenticationError
    from hyperbrace.search import TrialFailedError
    from hyperbrace.envelope import PlanImportError
    from hyperbrace.storage import GRPC_SCHEME
    from hyperbrace.template import TemplateError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # SIGTERM (scancel, a pod's eviction) stops this worker as Ctrl-C does: running trials are queued again at once.
    worker_process.interrupt_on_sigterm()
    if args.n_jobs < 1:
        raise UsageError("--n-jobs must be at least 1")
    gpus = _gpu_list(args.gpus, visible_gpus)
    # The model's own modules import as they do for a script started here (a console script's path lacks ".").
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    run_storage = _run_storage(args)
    # Checked against this machine's key before anything in it is unpickled (hyperbrace.plan_signing).
    checked = functools.partial(published_plan, run_dir=run_storage.run_dir, key_file=args.plan_key_file,
                                allow_unsigned=args.allow_unsigned_plan)
    try:
        plan = _wait_for_plan(run_storage, args.study, args.wait, checked)
    except PlanAuthenticationError as exc:
        print(f"hyperbrace worker: refusing the published plan: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except PlanImportError as exc:
        print(f"hyperbrace worker: {exc}", file=sys.stderr)
        return EXIT_ERROR
    plan = worker_process.prepare(plan, run_dir=run_storage.run_dir)
    # The storage as this machine reaches it (the chief may have used another host name for the same database).
    plan = _with_storage(plan, run_storage)
    if run_storage.url is not None and run_storage.url.startswith(GRPC_SCHEME):
        from hyperbrace.launchers.proxy import GrpcArtifactStore

        # No lock to share through the proxy: take the chief's queued trials; send the models home.
        address = run_storage.url[len(GRPC_SCHEME):]
        plan = dataclasses.replace(plan, tickets=True,
                                   settings=dataclasses.replace(plan.settings, artifacts=GrpcArtifactStore(address)))
    # Seeds differ per machine and process, so machines joining at once do not draw the same configurations.
    first_index = 1 + zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 100_000
    print(f"hyperbrace worker: joined study {plan.study_name!r} on {run_storage.description} "
          f"({plan.max_evals} trials in all); logs in {plan.settings.logs_dir}", file=sys.stderr)
    try:
        if gpus or args.n_jobs > 1:
            plan.n_jobs = len(gpus) if gpus else args.n_jobs
            run_workers(plan, None, gpus=gpus, first_index=first_index)
            status = 0
        else:
            status = worker_process.run_plan(plan, first_index, on_outcome=_print_outcome)
    except (TemplateError, TrialFailedError, WorkerError) as exc:
        print(f"hyperbrace worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if status == worker_process.EXIT_INTERRUPTED:
        raise KeyboardInterrupt
    print("hyperbrace worker: the search's budget is used up", file=sys.stderr)
    return status


def _run_storage(args: argparse.Namespace) -> RunStorage:
    """``--storage`` as a RunStorage: a database URL, the chief's gRPC proxy, or a journal on this machine."""
    from hyperbrace.storage import JOURNAL_NAME, RunStorage

    if "://" in args.storage:
        return RunStorage.resolve(args.storage, args.directory, args.study)
    path = Path(args.storage)
    journal = path if path.is_file() else path / JOURNAL_NAME
    if not journal.is_file() or journal.name != JOURNAL_NAME:
        raise UsageError(
            f"--storage {args.storage}: no {JOURNAL_NAME} there; give a run directory (hyperbrace-runs/STUDY), its "
            f"{JOURNAL_NAME}, a database URL (postgresql://...) or the chief's proxy (grpc://HOST:PORT)"
        )
    return RunStorage(journal.parent)  # the chief's own run directory: models and logs go beside its own


def _with_storage(plan: SearchPlan, run_storage: RunStorage) -> SearchPlan:
    return dataclasses.replace(plan, storage=dataclasses.replace(run_storage, retries=plan.storage.retries))


def _gpu_list(text: str | None, visible_gpus: Callable[[], list[str]]) -> list[str]:
    if not text:
        return []
    if text == "all":
        found = visible_gpus()
        if not found:
            raise UsageError("--gpus all: this machine shows no GPU (CUDA_VISIBLE_DEVICES, nvidia-smi -L)")
        return found
    return [part.strip() for part in text.split(",") if part.strip()]


def _wait_for_plan(
    run_storage: RunStorage, study_name: str, wait: float, published_plan: Callable[[optuna.Study], SearchPlan | None]
) -> SearchPlan:
    """The plan the chief published in the study, waiting up to ``wait`` seconds for the chief to start."""
    deadline = time.monotonic() + wait
    storage = run_storage.open()
    announced = False
    while True:
        try:
            from hyperbrace.versions import latest_version_name

            # A study whose space changed goes on in its latest version (hyperbrace.versions): join that one.
            study = optuna.load_study(study_name=latest_version_name(storage, study_name), storage=storage)
            plan = published_plan(study)
            if plan is not None:
                return plan
            problem = (f"study {study_name!r} has no published search: start it with hyperbrace "
                       "(minimize(storage=URL, study_name=...)), which stores it there")
        except KeyError:
            names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
            problem = f"there is no study {study_name!r} in {run_storage.description} (studies: {names or 'none'})"
        if time.monotonic() >= deadline:
            raise UsageError(problem)
        if not announced:
            print(f"hyperbrace worker: waiting up to {wait:g} s: {problem}", file=sys.stderr)
            announced = True
        time.sleep(2.0)


def _print_outcome(outcome: TrialOutcome) -> None:
    loss = "" if outcome.loss is None else f" loss {outcome.loss:.6g}"
    print(f"trial {outcome.number}: {outcome.state.name.lower()}{loss} ({outcome.duration:.1f} s)", file=sys.stderr)
