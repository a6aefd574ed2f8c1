"""The journal file a study is kept in by default: Optuna's journal format, made safe against crashes and full disks.

A journal is one JSON record a line, appended under a lock. Optuna's own backend (``JournalFileBackend``) trips
on three ordinary accidents, each of which this module handles:

* **A partial trailing record** (a process killed while writing, a power loss, a full disk): Optuna skips it when
  reading, but the next append glues a whole record to it, and from then on the file is unreadable. Opening a run
  (:func:`open_journal`) cuts such a tail off first, keeps the bytes in a side file and warns naming it; a tail that
  is a whole record missing only its newline is kept instead.
* **A damaged line in the middle** (the glued case above, written by another tool, or bit rot): reading raises
  :class:`JournalDamagedError`, which names the file and the line and says to run ``hyperbrace repair RUN``
  (:func:`repair_journal`): it keeps every readable record (also one glued behind damaged bytes), moves the rest to
  a side file and keeps the original beside it.
* **A full disk**: an append that fails part-way is cut back to the last whole record, and
  :class:`StorageFullError` says what happened; the search stops, and running it again once there is space
  continues it with every recorded trial.

The lock: Optuna's lock is a symbolic link (``study.journal.lock``) that a process killed while holding it leaves
behind, and every other process then waits 30 s before breaking it. Here a process first takes a kernel lock
(``flock``) on ``study.journal.owner``, which the kernel releases when its holder dies, writes its id there while it
holds Optuna's link, and clears it before letting go. A process that gets the kernel lock and finds the link with
an id still written knows its holder died, and removes it at once; a link without an id (left by a tool that uses
only Optuna's lock) is broken after :data:`FOREIGN_STALE_S` seconds. Optuna's link is still taken, so Optuna's own
tools (``optuna.load_study``, optuna-dashboard) writing the same file stay excluded. A Ctrl-C (or SIGTERM) that comes
while the link is taken or given back is held for those few system calls and raised right after, with the lock
free: Optuna's link code would otherwise turn it into another error, or remove a link another process holds.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "study.journal")
>>> with open(path, "wb") as f:
...     _ = f.write(b'{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}\\n{"op_co')
>>> import warnings
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     storage = open_journal(path)
>>> [s.study_name for s in storage.get_all_studies()], "partial record" in str(caught[0].message)
(['s'], True)
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import threading
import time
import warnings
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.storages.journal._file import BaseJournalFileLock  # the interface Optuna's locks implement

__all__ = [
    "JournalDamagedError",
    "StorageFullError",
    "JournalRepairedWarning",
    "JournalBackend",
    "open_journal",
    "repair_tail",
    "repair_journal",
    "is_disk_full",
]

#: An Optuna lock link with no hyperbrace owner written is broken after this long (a write takes milliseconds).
FOREIGN_STALE_S = 5.0
_OWNER_SUFFIX = ".owner"
_RECORD_START = b'{"op_code":'


class JournalDamagedError(RuntimeError):
    """A complete line of the journal is not a readable record."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        self.path, self.line, self.reason = path, line, reason
        run = Path(path).parent
        super().__init__(
            f"{path}, line {line}: this record is damaged ({reason}), so the study cannot be read past it. "
            f"Stop every process using it and run `hyperbrace repair {run}`: it keeps every readable record, "
            "moves the damaged bytes to a side file and keeps the original file beside it."
        )


class StorageFullError(OSError):
    """The disk (or quota) holding the study is full; the search stopped and nothing recorded was lost."""

    def __str__(self) -> str:
        return str(self.strerror)


class JournalRepairedWarning(UserWarning):
    """A journal's damaged tail was cut off when it was opened (the bytes are kept in a side file)."""


def is_disk_full(error: BaseException | None) -> bool:
    """Whether ``error`` (or an exception it was raised from or while handling) is a full disk or quota.

    >>> is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    True
    >>> is_disk_full(ValueError("x"))
    False
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False


def disk_full_error(path: str | os.PathLike[str], error: BaseException | None = None) -> StorageFullError:
    """The error a search stops with when the disk holding ``path`` is full."""
    detail = f" ({error.strerror})" if isinstance(error, OSError) and error.strerror else ""
    return StorageFullError(
        errno.ENOSPC,
        f"the disk holding {path} is full{detail}, so the search stopped. Every trial recorded so far is kept: "
        "free some space and run the same search again to continue it.",
    )


# -- the lock ---------------------------------------------------------------------------------------------------------
class _HeldInterrupts:
    """Ctrl-C and SIGTERM wait while the lock link is taken or given back, and are raised just after.

    Optuna's link lock turns an interrupt at the wrong moment into a wrong error: a KeyboardInterrupt during its
    rename comes out as FileNotFoundError (so an interrupted trial was recorded as a failed one, and not run
    again), and one while it waits makes it remove the link that another process holds. Signals reach Python code
    only in the main thread, so the main thread's handlers are swapped; worker threads need nothing.
    """

    def __init__(self) -> None:
        self.pending: tuple[int, Any] | None = None
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> _HeldInterrupts:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                handler = signal.getsignal(number)
                if callable(handler):  # a Python handler (Ctrl-C's, a worker's SIGTERM); the default ends anyway
                    self.saved[number] = handler
                    signal.signal(number, self._hold)
        return self

    def _hold(self, number: int, frame: Any) -> None:
        if self.pending is None:
            self.pending = (number, frame)

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self.saved.items():
            signal.signal(number, handler)

    def deliver(self) -> None:
        """Run the handler of the signal that came meanwhile (raising its KeyboardInterrupt), if one came."""
        if self.pending is not None:
            number, frame = self.pending
            self.pending = None
            self.saved[number](number, frame)


class JournalLock(BaseJournalFileLock):
    """Optuna's lock link, taken under a kernel lock so that a dead holder's link is broken at once."""

    def __init__(self, journal_path: str) -> None:
        self._link = JournalFileSymlinkLock(journal_path)
        self._link_path = journal_path + ".lock"  # Optuna's name (optuna.storages.journal._file.LOCK_FILE_SUFFIX)
        self._owner_path = journal_path + _OWNER_SUFFIX
        self._fd: int | None = None
        self._record = f"{os.uname().nodename} {os.getpid()}\n".encode()

    def acquire(self) -> bool:
        fd = os.open(self._owner_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (some NFS set-ups): Optuna's link alone, as Optuna does
            os.close(fd)
            fd = -1
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        held = _HeldInterrupts()
        with held:
            try:
                if fd >= 0:
                    self._break_stale_link(fd)
                self._link.acquire()
            except BaseException:
                self._unlock()
                raise
            if fd >= 0:
                try:
                    os.pwrite(fd, self._record, 0)
                except OSError:  # a full disk: the link then looks like a foreign tool's (broken after a while)
                    pass
        if held.pending:
            self.release()  # interrupted meanwhile: give the lock back, then raise the interrupt
            held.deliver()
        return True

    def release(self) -> None:
        held = _HeldInterrupts()
        with held:
            fd = self._fd
            try:
                if fd is not None and fd >= 0:
                    os.ftruncate(fd, 0)  # cleared before the link goes: a link with an owner means a dead holder
            finally:
                try:
                    self._link.release()
                finally:
                    self._unlock()
        held.deliver()

    def _unlock(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def _break_stale_link(self, fd: int) -> None:
        try:
            link_age = time.time() - os.lstat(self._link_path).st_mtime
        except FileNotFoundError:
            return
        owner = os.pread(fd, 256, 0).decode(errors="replace").strip()
        # We hold the kernel lock, so no live hyperbrace process holds the link: an owner written means it died.
        if owner or link_age > FOREIGN_STALE_S:
            try:
                os.unlink(self._link_path)
            except FileNotFoundError:
                return
            who = f"process {owner.split()[-1]} on {owner.split()[0]}, which died" if owner else "a process that died"
            optuna.logging.get_logger("hyperbrace").warning(
                f"removed the stale lock {self._link_path} left by {who} while writing"
            )


@dataclass
class _Line:
    number: int  #: 1-based
    data: bytes


# -- the backend ------------------------------------------------------------------------------------------------------
class JournalBackend(JournalFileBackend):
    """Optuna's ``JournalFileBackend`` with :class:`JournalLock`, errors that name the file and line, and appends
    that never leave a partial record on a full disk."""

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path, lock_obj=JournalLock(file_path))

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        # Optuna's reading, except that a damaged complete line raises at once with its file and line; an incomplete
        # last line is another process's write in progress (or a tail that repair_tail will cut), so it is skipped.
        with open(self._file_path, "rb") as f:
            remaining = os.fstat(f.fileno()).st_size
            start = 0
            if log_number_from in self._log_number_offset:
                f.seek(self._log_number_offset[log_number_from])
                start = log_number_from
                remaining -= self._log_number_offset[log_number_from]
            for log_number, line in enumerate(f, start=start):
                remaining -= len(line)
                if remaining < 0 or not line.endswith(b"\n"):
                    break
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict) or "op_code" not in record:
                        raise ValueError("not a journal record")
                except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                    raise JournalDamagedError(self._file_path, log_number + 1, _reason(exc)) from None
                if log_number + 1 not in self._log_number_offset:
                    self._log_number_offset[log_number + 1] = self._log_number_offset[log_number] + len(line)
                if log_number >= log_number_from:
                    yield record

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode("utf-8")
        self._lock.acquire()
        try:
            fd = os.open(self._file_path, os.O_WRONLY | os.O_APPEND)
            try:
                size = os.fstat(fd).st_size
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                except OSError as exc:
                    try:
                        os.ftruncate(fd, size)  # no partial record: cut back to the last whole one
                    except OSError:
                        pass
                    if is_disk_full(exc):
                        raise disk_full_error(self._file_path, exc) from exc
                    raise
            finally:
                os.close(fd)
        finally:
            self._lock.release()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"bytes that are not UTF-8 text at column {exc.start + 1}"
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg} at column {exc.colno}"
    return str(exc)


# -- opening and repairing --------------------------------------------------------------------------------------------
def open_journal(path: str | os.PathLike[str], repair: bool = True) -> optuna.storages.JournalStorage:
    """Open a journal file as an Optuna storage (creating it if missing), first cutting off a partial last record
    (:func:`repair_tail`) unless ``repair`` is false (read-only uses: a partial tail does not hinder reading)."""
    path = os.fspath(path)
    if repair:
        repair_tail(path)
    return optuna.storages.JournalStorage(JournalBackend(path))


def _side_file(path: str, kind: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = Path(f"{path}.{kind}-{stamp}")
    n = 1
    while candidate.exists():
        candidate = Path(f"{path}.{kind}-{stamp}-{n}")
        n += 1
    return candidate


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def repair_tail(path: str | os.PathLike[str]) -> Path | None:
    """Cut a partial record off the end of the journal at ``path``; returns the side file holding its bytes.

    A tail that is a whole record short of its newline gets the newline instead (nothing is lost; returns None).
    Returns None when the file ends cleanly (or does not exist). Warns with :class:`JournalRepairedWarning`.
    """
    path = os.fspath(path)
    if not os.path.exists(path) or _ends_with_newline(path):
        return None
    lock = JournalLock(path)
    lock.acquire()
    try:
        if _ends_with_newline(path):  # it was another process's write in progress
            return None
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            back = min(size, 1 << 20)
            f.seek(size - back)
            chunk = f.read(back)
        cut = chunk.rfind(b"\n") + 1
        while cut == 0 and back < size:  # a tail longer than 1 MiB: read the whole file
            with open(path, "rb") as f:
                chunk = f.read()
            back = size
            cut = chunk.rfind(b"\n") + 1
        tail = chunk[cut:]
        keep_to = size - len(tail)
        if _is_record(tail):
            try:
                with open(path, "ab") as f:
                    f.write(b"\n")
                    f.flush()
                    os.fsync(f.fileno())
                return None
            except OSError as exc:
                os.truncate(path, size)
                if not is_disk_full(exc):
                    raise
        side = _side_file(path, "damaged")
        try:
            with open(side, "wb") as f:
                f.write(tail)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            side.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise disk_full_error(path, exc) from exc
            raise
        os.truncate(path, keep_to)
    finally:
        lock.release()
    warnings.warn(
        f"{path} ended with a partial record ({len(tail)} bytes; a process was killed while writing, or the disk "
        f"was full): it was cut off and its bytes kept in {side}. Every complete record is intact.",
        JournalRepairedWarning,
        stacklevel=2,
    )
    return side


def _is_record(data: bytes) -> bool:
    try:
        record = json.loads(data)
    except ValueError:
        return False
    return isinstance(record, dict) and "op_code" in record


@dataclass
class RepairReport:
    """What :func:`repair_journal` did."""

    path: Path
    records: int = 0  #: records in the repaired journal
    salvaged: int = 0  #: of which recovered from behind damaged bytes on a line
    damaged_lines: list[int] = field(default_factory=list)  #: 1-based line numbers that were damaged
    dropped: int = 0  #: readable records that contradict the others (e.g. about a trial whose creation was lost)
    side_file: Path | None = None  #: the damaged bytes
    backup: Path | None = None  #: the journal as it was before

    @property
    def changed(self) -> bool:
        return self.side_file is not None or self.dropped > 0

    def __str__(self) -> str:
        if not self.changed:
            return f"{self.path}: nothing to repair; all {self.records} records are readable"
        lines = ", ".join(map(str, self.damaged_lines[:10])) + (" ..." if len(self.damaged_lines) > 10 else "")
        text = (
            f"{self.path}: repaired. {self.records} records kept"
            + (f" ({self.salvaged} recovered from damaged lines)" if self.salvaged else "")
            + (f"; damaged lines: {lines}" if self.damaged_lines else "")
            + (f"; {self.dropped} records dropped that referred to lost ones" if self.dropped else "")
            + "."
        )
        if self.side_file is not None:
            text += f"\nThe damaged bytes are in {self.side_file}."
        text += f"\nThe journal as it was is kept as {self.backup}."
        return text


def repair_journal(path: str | os.PathLike[str]) -> RepairReport:
    """Rewrite the journal at ``path`` keeping every readable record; for ``hyperbrace repair``.

    Each line that is not a record is searched for records glued behind damaged bytes (a partial write followed by
    a whole one); what cannot be read goes to a side file, the original file is kept (hard-linked, so it takes no
    space) as ``study.journal.before-repair-<time>``. Records that Optuna cannot apply once a damaged one is gone
    (say, a trial's result whose creation was lost) are dropped and counted. Run it with the search stopped.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "study.journal")
    >>> good = b'{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}\\n'
    >>> with open(path, "wb") as f:
    ...     _ = f.write(b"\\x00garbage\\n" + good)
    >>> report = repair_journal(path)
    >>> report.records, report.damaged_lines, open(path, "rb").read() == good
    (1, [1], True)
    """
    from optuna.storages.journal._storage import JournalStorageReplayResult

    path = os.fspath(path)
    report = RepairReport(Path(path))
    lock = JournalLock(path)
    lock.acquire()
    try:
        with open(path, "rb") as f:
            content = f.read()
        kept: list[bytes] = []
        damaged: list[bytes] = []
        replay = JournalStorageReplayResult("hyperbrace-repair-")
        for number, line in enumerate(content.splitlines(keepends=True), start=1):
            body = line.rstrip(b"\r\n")
            if not body.strip():
                continue
            records: list[bytes] = []
            if line.endswith(b"\n") and _is_record(body):
                records.append(body)
            else:
                report.damaged_lines.append(number)
                rescued, garbage = _salvage(body)
                records.extend(rescued)
                report.salvaged += len(rescued)
                damaged.append(f"--- line {number}\n".encode() + garbage + b"\n")
            for record in records:
                try:
                    replay.apply_logs([json.loads(record)])
                except Exception:  # noqa: BLE001  (a record Optuna cannot apply: keep it in the side file)
                    report.dropped += 1
                    damaged.append(f"--- line {number} (unusable)\n".encode() + record + b"\n")
                    continue
                kept.append(record)
        report.records = len(kept)
        if not damaged:
            return report
        side = _side_file(path, "damaged")
        backup = _side_file(path, "before-repair")
        temporary = Path(f"{path}.repairing-{os.getpid()}")
        try:
            with open(side, "wb") as f:
                f.writelines(damaged)
            with open(temporary, "wb") as f:
                f.write(b"".join(record + b"\n" for record in kept))
                f.flush()
                os.fsync(f.fileno())
            os.link(path, backup)
            os.replace(temporary, path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise disk_full_error(path, exc) from exc
            raise
        report.side_file, report.backup = side, backup
        return report
    finally:
        lock.release()


def _salvage(body: bytes) -> tuple[list[bytes], bytes]:
    """The records glued into a damaged line, and the bytes around them that are not records."""
    rescued: list[bytes] = []
    garbage = b""
    position = 0
    while position < len(body):
        start = body.find(_RECORD_START, position)
        if start < 0:
            garbage += body[position:]
            break
        end = _record_end(body, start)
        if end is None:
            garbage += body[position:start + 1]
            position = start + 1
            continue
        garbage += body[position:start]
        rescued.append(body[start:end])
        position = end
    return rescued, garbage


def _record_end(body: bytes, start: int) -> int | None:
    """Where the JSON record starting at ``start`` ends, if one does."""
    try:
        text = body[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        text = body[start:start + exc.start].decode("utf-8")
    try:
        record, end = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or "op_code" not in record:
        return None
    return start + len(text[:end].encode("utf-8"))
