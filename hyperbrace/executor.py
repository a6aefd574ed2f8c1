"""Where trials run: worker processes on this machine (``n_jobs=``, ``gpus=``), and workers on other machines.

Local workers
    ``minimize(..., n_jobs=4)`` starts four worker processes with ``subprocess`` (``python -m hyperbrace._worker``),
    each running the same trial loop as a one-process search (:meth:`SearchPlan.run_trials`) against the run's
    storage. The budget lock makes ``max_evals`` exact across them. Fresh interpreters were chosen over
    ``multiprocessing``: forking after PyTorch has trained in the parent hangs the child, and the spawn start
    method re-imports ``__main__``, which re-runs a script that has no ``if __name__ == "__main__":`` guard.
    The plan travels as a cloudpickle file, which carries functions defined in ``__main__`` and in notebooks by
    value (and the compiled model as its syntax tree), so neither a guard nor a source file is needed.

    This process watches: it polls the study for the progress bar, replaces a worker that dies (a SIGKILL, the
    out-of-memory killer) while work remains, after failing the dead worker's running trial and queueing its
    configuration again; it stops every worker and raises when one reports an error that would fail every trial
    alike (:class:`~hyperbrace.TemplateError`, :class:`~hyperbrace.TrialFailedError`); and on Ctrl-C it interrupts
    the workers, whose running trials end FAIL and are queued again, so running the search again resumes it.

Threads
    Each worker's math libraries (OpenMP, MKL, OpenBLAS, numexpr, PyTorch, TensorFlow's intra- and inter-op pools,
    XLA for JAX through ``XLA_FLAGS``) are capped to its share of the cores, unless the variables are already set:
    N workers each using every core run slower than N workers sharing them (measured: two Keras trainings on 2 cores took 35 s each with default threads, 24-26 s capped).

Memory
    A worker whose resident memory grew by more than ``HYPERBRACE_WORKER_MAX_GROWTH_MB`` (256 by default) since its
    first trial leaves between two trials and a fresh one takes its place (:mod:`hyperbrace.recycle`): a framework
    that leaks across trials (TensorFlow) cannot grow a long search without bound.

Data
    ``data()`` runs once, in this process, before the workers start, so every worker sees the same data (a random
    split is not drawn N times). NumPy arrays in its value are written as ``.npy`` files in the run directory and
    memory-mapped copy-on-write by every worker: N workers share one copy in the page cache instead of holding N.
    Other values are pickled for the workers; a value that does not pickle is made by each worker calling
    ``data()`` itself (once per worker, never once per trial).

Other machines
    A search on a database (``storage="postgresql://..."``) publishes its plan in the study
    (:func:`publish_plan`), so ``hyperbrace worker --storage URL --study NAME`` on any machine with the same code
    and packages joins it.
"""

from __future__ import annotations

import errno
import dataclasses
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cloudpickle
import optuna
from optuna.trial import TrialState

from hyperbrace import plan_signing
from hyperbrace._secrets import hide_password, looks_like_credential, without_credentials
from hyperbrace._warnings import user_stacklevel
from hyperbrace.budget import budget_lock, count_used
from hyperbrace.display import Progress
from hyperbrace.envelope import seal, unseal
from hyperbrace.journal import StorageFullError
from hyperbrace.recovery import describe_exit, is_worker_alive, reap_dead_trials, worker_id
from hyperbrace.recycle import EXIT_RECYCLE
from hyperbrace.search import SearchPlan, TrialFailedError, call_data
from hyperbrace.template import TemplateError

__all__ = [
    "run_workers",
    "visible_gpus",
    "thread_caps",
    "capped_threads",
    "publish_plan",
    "published_plan",
    "WorkerError",
    "PLAN_ATTR",
]

#: The study system attribute holding the published plan (its cloudpickle in base64, and its signature).
PLAN_ATTR = "hyperbrace:plan"
#: Thread-count variables capped per worker: OpenMP (PyTorch's intra-op threads follow it), the BLAS libraries,
#: numexpr, and TensorFlow's intra-op and inter-op pools. XLA (JAX, and TensorFlow's XLA) takes its cap in
#: ``XLA_FLAGS`` instead (see :func:`thread_caps`).
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)
#: XLA flags that set its CPU threads; an ``XLA_FLAGS`` naming either is the user's choice and left alone.
XLA_THREAD_FLAGS = ("intra_op_parallelism_threads", "xla_cpu_multi_thread_eigen")
#: XLA's CPU client has no flag for an intra-op thread count (a bare ``intra_op_parallelism_threads=N``, a TensorFlow
#: option often copied into XLA_FLAGS, is read as a flag-file name and aborts the process); what it has is
#: single-threaded Eigen, which a one-core share gets.
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false"
POLL_INTERVAL_S = 0.5
#: How long interrupted workers get to close their running trials before they are killed.
STOP_GRACE_S = 20.0
#: Published plans larger than this are not stored in the database (a model function that captured a data set).
MAX_PUBLISHED_BYTES = 64 * 2**20


class WorkerError(RuntimeError):
    """A worker process could not run trials (it could not load the model, or workers kept dying)."""


# -- GPUs and threads -----------------------------------------------------------------------------------------------
def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when it is set, else those ``nvidia-smi -L`` lists.

    Returns ids as strings (what ``CUDA_VISIBLE_DEVICES`` takes); an empty list on a machine without GPUs.

    >>> import os
    >>> os.environ["CUDA_VISIBLE_DEVICES"] = "2,3"
    >>> visible_gpus()
    ['2', '3']
    >>> del os.environ["CUDA_VISIBLE_DEVICES"]
    """
    declared = os.environ.get("CUDA_VISIBLE_DEVICES")
    if declared is not None:
        ids = [part.strip() for part in declared.split(",") if part.strip()]
        # CUDA stops at the first invalid id ("-1" is the usual way to hide every GPU).
        valid = []
        for gpu in ids:
            if gpu.startswith("-"):
                break
            valid.append(gpu)
        return valid
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return []
    try:
        listing = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split(":", 1)[0].split()[1] for line in listing.splitlines() if line.startswith("GPU ")]


def usable_cpus() -> int:
    """The cores this process may run on (its affinity mask, e.g. a Slurm allocation or ``taskset``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def thread_caps(n_workers: int, environ: dict[str, str] | os._Environ[str] | None = None) -> dict[str, str]:
    """The thread-count variables a worker gets: its share of the cores, except those the user already set.

    XLA (JAX's CPU backend) reads no thread variable: a one-core share adds ``--xla_cpu_multi_thread_eigen=false`` to
    ``XLA_FLAGS`` (after the user's own flags, unless those already set XLA's threads).

    >>> caps = thread_caps(2, environ={"MKL_NUM_THREADS": "3"})
    >>> "MKL_NUM_THREADS" in caps, caps["OMP_NUM_THREADS"] == str(max(1, usable_cpus() // 2))
    (False, True)
    >>> "XLA_FLAGS" in thread_caps(2, environ={"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=true"})
    False
    """
    return capped_threads(max(1, usable_cpus() // max(1, n_workers)), environ)


def capped_threads(cores: int, environ: dict[str, str] | os._Environ[str] | None = None) -> dict[str, str]:
    """The variables that cap a worker's math libraries (and XLA) to ``cores`` threads, except those already set.

    >>> capped_threads(1, environ={"XLA_FLAGS": "--xla_dump_to=/tmp/x"})["XLA_FLAGS"]
    '--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=false'
    >>> "XLA_FLAGS" in capped_threads(2, environ={})
    False
    """
    environ = os.environ if environ is None else environ
    caps = {name: str(cores) for name in THREAD_VARIABLES if name not in environ}
    flags = environ.get("XLA_FLAGS", "")
    if cores == 1 and not any(flag in flags for flag in XLA_THREAD_FLAGS):
        caps["XLA_FLAGS"] = f"{flags} {XLA_ONE_THREAD}".strip()
    return caps


# -- data, made once and shared -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _ArrayFile:
    """Stands for a NumPy array saved as ``.npy``; workers memory-map it."""

    path: str


@dataclasses.dataclass(frozen=True)
class SharedData:
    """A ``data()`` stand-in for workers: returns the parent's ``data()`` value, its arrays memory-mapped.

    Arrays are mapped copy-on-write (``mmap_mode="c"``): a model that scales its input in place still works, and
    only the pages it writes become private to that worker.
    """

    skeleton_path: str

    def __call__(self) -> Any:
        with open(self.skeleton_path, "rb") as file:
            skeleton = pickle.load(file)
        return _map_arrays(skeleton)


def _map_arrays(value: Any) -> Any:
    if isinstance(value, _ArrayFile):
        import numpy

        return numpy.load(value.path, mmap_mode="c", allow_pickle=False)
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_map_arrays(v) for v in value)
    if isinstance(value, list):
        return [_map_arrays(v) for v in value]
    if isinstance(value, dict) and type(value) is dict:
        return {k: _map_arrays(v) for k, v in value.items()}
    return value


def _save_arrays(value: Any, directory: Path, counter: list[int]) -> Any:
    """``value`` with each plain NumPy array (in tuples, lists and dicts) saved to ``directory`` and replaced."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and type(value) in (numpy.ndarray, numpy.memmap) and value.dtype != object:
        path = directory / f"array-{counter[0]}.npy"
        counter[0] += 1
        numpy.save(path, numpy.ascontiguousarray(value), allow_pickle=False)
        return _ArrayFile(str(path.resolve()))
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_save_arrays(v, directory, counter) for v in value)
    if isinstance(value, list):
        return [_save_arrays(v, directory, counter) for v in value]
    if isinstance(value, dict) and type(value) is dict:
        return {k: _save_arrays(v, directory, counter) for k, v in value.items()}
    return value


def share_data(plan: SearchPlan, directory: Path) -> SearchPlan:
    """Call ``data()`` once here and return a plan whose workers load its value from ``directory``.

    If the value cannot be pickled (a generator, an open file, a framework's dataset object), the plan is
    returned unchanged and each worker calls ``data()`` itself.
    """
    if plan.data is None or isinstance(plan.data, SharedData):
        return plan
    value = call_data(plan.data, plan.data_args)
    directory.mkdir(parents=True, exist_ok=True)
    skeleton = _save_arrays(value, directory, [0])
    del value
    skeleton_path = directory / "data.pickle"
    try:
        with open(skeleton_path, "wb") as file:
            cloudpickle.dump(skeleton, file)
    except Exception:  # noqa: BLE001  (anything may fail to pickle; the workers then make the data themselves)
        return plan
    return dataclasses.replace(plan, data=SharedData(str(skeleton_path.resolve())), data_args=None)


# -- plans for other machines ---------------------------------------------------------------------------------------
def publish_plan(study: optuna.Study, plan: SearchPlan, warn: bool = True) -> bool:
    """Store ``plan`` in the study, so ``hyperbrace worker`` on any machine can join the search.

    Returns False (with a warning) when the plan does not pickle or is too large to keep in the database.
    Nothing secret is published: not the database URL's password (each worker is given the URL itself), nor
    captured globals that look like credentials (left out, with a warning). The plan is signed
    (:mod:`hyperbrace.plan_signing`), so workers run it only if it is the chief's: see docs/security.md.
    """
    published = _without_secrets(plan) if plan.storage.url is not None else _for_machines(plan)
    try:
        # In its envelope: the worker applies the chief's framework variables (KERAS_BACKEND, ...) before loading
        # it, and a missing module is reported in two lines (hyperbrace.envelope).
        blob = seal(published)
    except Exception as exc:  # noqa: BLE001
        if not warn:
            return False
        warnings.warn(
            f"hyperbrace worker cannot join this search: its model or data function does not pickle ({exc}); "
            "run the same script on the other machines instead",
            stacklevel=user_stacklevel(),
        )
        return False
    if len(blob) > MAX_PUBLISHED_BYTES:
        if not warn:
            return False
        warnings.warn(
            f"hyperbrace worker cannot join this search: the pickled model function is {len(blob) // 2**20} MB "
            "(it probably refers to a data set in a global variable; load it in data() instead); "
            "run the same script on the other machines instead",
            stacklevel=user_stacklevel(),
        )
        return False
    value = plan_signing.sign(blob, study.study_name, plan_signing.chief_key(plan.storage.run_dir, announce=warn))
    if _system_attrs(study).get(PLAN_ATTR) != value:
        study._storage.set_study_system_attr(study._study_id, PLAN_ATTR, value)
    return True


def _for_machines(plan: SearchPlan) -> SearchPlan:
    return dataclasses.replace(plan, n_jobs=max(plan.n_jobs, 2))  # several machines: a parallel sampler


def _without_secrets(plan: SearchPlan) -> SearchPlan:
    """The plan as published in a database: for several machines (a parallel sampler), without the URL's password
    (workers are given the URL themselves) and without captured globals that look like credentials. (A journal's
    plan is read only by those who can read the run directory, and so the script: it is published whole.)"""
    storage = plan.storage
    if storage.url is not None:
        storage = dataclasses.replace(storage, url=hide_password(storage.url))
    args = plan.data_args
    named = args.items() if isinstance(args, dict) else enumerate(args or ()) if isinstance(args, (list, tuple)) else ()
    secret_args = [key for key, value in named if looks_like_credential(str(key), value)]
    if secret_args:
        warnings.warn(
            f"data_args {secret_args} look like credentials and are published with the search, where anyone who can "
            "read the database can read them: let data() read them from the environment instead",
            stacklevel=user_stacklevel(),
        )
    plan, hidden = without_credentials(_for_machines(dataclasses.replace(plan, storage=storage)))
    if hidden:
        warnings.warn(
            f"not publishing {', '.join(hidden)} with the search: they look like credentials, and anyone who can read "
            "the database could read them. Workers joining with `hyperbrace worker` must get them from their own "
            "environment (e.g. os.environ[...] inside the function)",
            stacklevel=user_stacklevel(),
        )
    return plan


def _system_attrs(study: optuna.Study) -> dict[str, Any]:
    return study._storage.get_study_system_attrs(study._study_id)  # Optuna 5 dropped Study.system_attrs


def published_plan(
    study: optuna.Study,
    run_dir: Path | None = None,
    key_file: str | os.PathLike[str] | None = None,
    allow_unsigned: bool = False,
) -> SearchPlan | None:
    """The plan a chief published in ``study`` (``None`` if none was), once its signature is checked with this
    machine's key (:func:`hyperbrace.plan_signing.worker_key`: ``key_file``, ``HYPERBRACE_PLAN_KEY``, or the
    ``.plan-key`` in ``run_dir``); raises :class:`~hyperbrace.plan_signing.PlanAuthenticationError` before
    unpickling anything that is not the chief's. Unpickling it runs the chief's code.

    The chief's framework variables are set in this process first; a missing module raises
    :class:`~hyperbrace.envelope.PlanImportError` (two lines).
    """
    value = _system_attrs(study).get(PLAN_ATTR)
    if value is None:
        return None
    key = plan_signing.worker_key(run_dir, key_file)
    return unseal(plan_signing.verify(value, study.study_name, key, allow_unsigned=allow_unsigned))


# -- local workers --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Worker:
    slot: int  #: its place among the workers: picks its GPU and its sampler seed
    launch: int  #: how many workers were started before it (names its files)
    process: subprocess.Popen[bytes]
    log_path: Path
    error_path: Path
    gpu: str | None
    handled: bool = False  #: its exit was dealt with (replaced, or nothing left to do)

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def death(self) -> tuple[int, str]:
        """What the reaper needs to explain this (dead) worker's running trial: exit status and last output."""
        return self.process.returncode, self.tail(40)


class _Pool:
    def __init__(self, plan: SearchPlan, session: Path, payload: Path, n_workers: int, gpus: Sequence[str],
                 first_index: int) -> None:
        self.plan = plan
        self.session = session
        self.payload = payload
        self.n_workers = n_workers
        self.gpus = list(gpus)
        self.first_index = first_index
        self.workers: list[_Worker] = []
        self.launches = 0

    def start(self, slot: int) -> _Worker:
        gpu = self.gpus[slot] if self.gpus else None
        env = dict(os.environ)
        env.update(thread_caps(self.n_workers))
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        env["PYTHONUNBUFFERED"] = "1"
        launch = self.launches
        self.launches += 1
        log_path = self.session / f"worker-{launch}.log"
        error_path = self.session / f"worker-{launch}.error.json"
        # Its index seeds its sampler: a replacement gets a new one (its own stream, not a replay of the dead
        # worker's draws); without deaths the indexes are the slots, so a seeded search is reproducible.
        index = self.first_index + (slot if launch < self.n_workers else launch)
        command = [
            sys.executable, "-m", "hyperbrace._worker", str(self.payload), str(index),
            "--error-file", str(error_path), "--parent-pid", str(os.getpid()),
        ]
        with open(log_path, "wb") as log:
            # A session of its own: a Ctrl-C in the terminal reaches only this process, which then interrupts each
            # worker exactly once (a second SIGINT could cut a worker's clean-up short).
            process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        worker = _Worker(slot, launch, process, log_path, error_path, gpu)
        self.workers.append(worker)
        return worker

    @property
    def alive(self) -> list[_Worker]:
        return [w for w in self.workers if w.process.poll() is None]

    def stop(self) -> None:
        """Interrupt every worker (their running trials end FAIL and are queued again); kill those that hang."""
        for worker in self.alive:
            try:
                worker.process.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_GRACE_S
        for worker in self.workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()


def _reported_error(worker: _Worker) -> BaseException | None:
    """The error a worker wrote before exiting, rebuilt as the exception the user should see."""
    try:
        report = json.loads(worker.error_path.read_text())
    except (OSError, ValueError):
        return None
    return error_from_report(report, f"worker {worker.slot}")


def error_from_report(report: dict[str, Any], who: str) -> BaseException:
    """A worker's error report (:func:`hyperbrace._worker.write_report`) as the exception the user should see."""
    kind, message = report.get("type"), report.get("message", "")
    if kind == "TemplateError":
        fields = {k: report.get(k, "") for k in ("filename", "text", "function")}
        return TemplateError(message, lineno=int(report.get("lineno", 0)), **fields)
    if kind == "TrialFailedError":
        return TrialFailedError(message)
    if kind == "StorageFullError":
        return StorageFullError(errno.ENOSPC, message)
    return WorkerError(f"{who} could not run trials:\n{message}")


def _work_remains(study: optuna.Study, plan: SearchPlan) -> bool:
    if plan.deadline is not None and time.time() >= plan.deadline:
        return False
    trials = study.get_trials(deepcopy=False)
    return any(t.state == TrialState.WAITING for t in trials) or count_used(trials) < plan.max_evals


def _show_progress(progress: Progress | None, study: optuna.Study) -> None:
    if progress is None:
        return
    trials = study.get_trials(deepcopy=False)  # one read per poll: on a database every read is a query
    values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    progress.advance(count_used(trials), min(values) if values else None)


OWNER_FILE = "owner"  #: in a session folder: the process that made it (``host:pid:start``)


def remove_dead_sessions(workers_dir: Path) -> list[Path]:
    """Remove the session folders (plan, shared data) that searches killed before they could clean up left in
    ``workers_dir``: only those whose owner process, on this host, is gone. Returns the folders removed.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "1-1").mkdir(); _ = (root / "1-1" / OWNER_FILE).write_text("%s:999999999:1" % worker_id().split(":")[0])
    >>> (root / "2-2").mkdir(); _ = (root / "2-2" / OWNER_FILE).write_text(worker_id())
    >>> [p.name for p in remove_dead_sessions(root)], sorted(p.name for p in root.iterdir())
    (['1-1'], ['2-2'])
    """
    removed = []
    try:
        sessions = list(workers_dir.iterdir())
    except OSError:
        return removed
    for session in sessions:
        try:
            owner = (session / OWNER_FILE).read_text().strip()
        except OSError:
            continue  # being created right now, or not one of ours: leave it
        if is_worker_alive(owner) is False:  # None (another host's, on a shared disk): leave it
            shutil.rmtree(session, ignore_errors=True)
            removed.append(session)
    return removed


def run_workers(
    plan: SearchPlan,
    progress: Progress | None = None,
    gpus: Sequence[str] | None = None,
    first_index: int = 0,
) -> None:
    """Run ``plan``'s trials in worker processes on this machine until its budget or deadline is used up.

    One worker per GPU when ``gpus`` are given (each sees only its own, through ``CUDA_VISIBLE_DEVICES``), else
    ``plan.n_jobs`` workers. ``first_index`` offsets the workers' sampler seeds (machines joining one study use
    different offsets). Raises what a worker raised for the whole search (TemplateError, TrialFailedError),
    :class:`WorkerError` when workers cannot start or keep dying, and KeyboardInterrupt after stopping them.
    """
    gpus = [str(g) for g in gpus or ()]
    n_workers = len(gpus) if gpus else max(1, plan.n_jobs)
    storage = plan.storage.open()
    study = optuna.load_study(study_name=plan.study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    remaining = plan.max_evals - count_used(trials) + sum(t.state == TrialState.WAITING for t in trials)
    n_workers = max(1, min(n_workers, remaining))  # no process started for nothing (8 workers, 3 trials left)
    remove_dead_sessions(plan.storage.run_dir / ".workers")
    session = plan.storage.run_dir / ".workers" / f"{os.getpid()}-{time.time_ns()}"
    session.mkdir(parents=True)
    (session / OWNER_FILE).write_text(worker_id())
    # Dead workers are replaced, but a worker that dies at once every time (a crashing extension, too little
    # memory for even one trial) must not be restarted forever.
    max_replacements = max(4, 2 * n_workers)
    replacements = 0
    deaths: list[str] = []

    def reap(dead: list[_Worker]) -> None:
        """Close the dead workers' running trials (under the budget lock, as every reaper)."""
        with budget_lock(plan.storage.budget_lock_path, plan.storage.url):
            reap_dead_trials(study, plan.storage.retries, plan.settings.logs_dir,
                             {w.process.pid: w.death() for w in dead})

    try:
        # Every worker seeds its sampler from the trials the study had when this run began (reproducible).
        shared = share_data(dataclasses.replace(plan, resume=len(trials)), session / "data")
        payload = session / "plan.pickle"
        with open(payload, "wb") as file:
            # The worker reads the import path first, so the plan's modules import there as they do here.
            pickle.dump([os.path.abspath(p) if p else os.getcwd() for p in sys.path], file)
            cloudpickle.dump(shared, file)
        pool = _Pool(shared, session, payload, n_workers, gpus, first_index)
        try:
            for slot in range(n_workers):
                pool.start(slot)
            while True:
                time.sleep(POLL_INTERVAL_S)
                _show_progress(progress, study)
                for worker in list(pool.workers):
                    status = worker.process.poll()
                    if status is None or status == 0 or worker.handled:
                        continue
                    worker.handled = True
                    if status == EXIT_RECYCLE:  # it left between two trials to shed memory: not a death
                        if _work_remains(study, plan):
                            pool.start(worker.slot)
                        continue
                    error = _reported_error(worker)
                    if error is not None:
                        pool.stop()
                        raise error
                    # It died (killed, out of memory, crashed): fail its running trial, queue it again, replace it.
                    deaths.append(describe_exit(status))
                    reap([worker])
                    if not _work_remains(study, plan):
                        continue
                    if replacements >= max_replacements:
                        pool.stop()
                        raise WorkerError(
                            f"{replacements + 1} worker processes died ({'; '.join(deaths[-5:])}); stopping. "
                            f"The last one's output:\n{worker.tail()}"
                        )
                    replacements += 1
                    pool.start(worker.slot)
                if not pool.alive:
                    reap(pool.workers)
                    if not _work_remains(study, plan):
                        break
                    if replacements >= max_replacements:
                        raise WorkerError(f"{replacements} worker processes were replaced and trials remain; stopping")
                    # Work appeared after the last worker left (a dead worker's trial was queued again).
                    replacements += 1
                    pool.start(0)
        except BaseException:
            pool.stop()
            raise
        finally:
            reap([w for w in pool.workers if w.process.poll() is not None])
            _show_progress(progress, study)
    finally:
        shutil.rmtree(session, ignore_errors=True)
        try:
            session.parent.rmdir()
        except OSError:
            pass
