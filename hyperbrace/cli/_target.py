"""Which search a command reads: a run directory, its journal file, or a database URL + study name.

Every command that reads a search takes the same arguments (:func:`add_arguments`) and opens them with
:func:`open_target`, which never creates anything: a path without a journal, a SQLite file that does not exist,
or a database without Optuna's tables is an error that says what to give instead.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_arguments(parser)
>>> try:
...     open_target(parser.parse_args([]))
... except UsageError as exc:
...     print(exc)
give the search to read: a run directory (e.g. hyperbrace-runs/<study>), its study.journal file, or a database URL (sqlite:///study.db) with --study NAME
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

if TYPE_CHECKING:
    from hyperbrace.result import SearchResult

__all__ = ["UsageError", "Target", "add_arguments", "open_target", "open_storage", "run_directory", "DEFAULT_DIRECTORY"]

DEFAULT_DIRECTORY = "hyperbrace-runs"


class UsageError(Exception):
    """The command's input is wrong; ``hyperbrace`` prints the message and exits with status 2."""


@dataclass
class Target:
    """One study, opened for reading."""

    storage: optuna.storages.BaseStorage
    study_name: str
    directory: Path  #: the run directory (saved models, logs)
    description: str  #: where the study is kept, for messages (a URL's password hidden)
    url: str | None = None  #: the database URL, or None for a journal file
    journal: Path | None = None

    def load(self) -> optuna.Study:
        return optuna.load_study(study_name=self.study_name, storage=self.storage)

    def result(self) -> SearchResult:
        from hyperbrace.result import SearchResult

        return SearchResult(self.load(), self.directory)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments naming a search: ``RUN`` (a run directory, journal file or URL), ``--storage``, ``--study``."""
    parser.add_argument("run_path", nargs="?", metavar="RUN",
                        help="a run directory (hyperbrace-runs/<study>), its study.journal file, a study's name "
                             "under ./hyperbrace-runs, or a database URL (sqlite:///study.db, postgresql://...)")
    parser.add_argument("--storage", metavar="URL", help="a database URL (the same as giving it as RUN)")
    parser.add_argument("--study", metavar="NAME",
                        help="the study's name (needed when the storage holds several); a study whose space changed "
                             "means its latest version: NAME@v1, NAME@v2, ... name one version")


def open_storage(args: argparse.Namespace) -> tuple[optuna.storages.BaseStorage, Path | None, str, str | None]:
    """(storage, run directory or None for a database, description, URL or None), without creating anything."""
    run, url = getattr(args, "run_path", None), getattr(args, "storage", None)
    if run is not None and url is not None:
        raise UsageError("give RUN or --storage URL, not both")
    if run is None and url is None:
        raise UsageError(
            "give the search to read: a run directory (e.g. hyperbrace-runs/<study>), its study.journal file, "
            "or a database URL (sqlite:///study.db) with --study NAME"
        )
    text = url if url is not None else run
    if "://" in text:
        return _open_database(text), None, _hide(text), text
    if url is not None:
        raise UsageError(f"--storage takes a database URL, got {url!r}; a run directory is given alone, as RUN")
    path = Path(text)
    if not path.exists() and (Path(DEFAULT_DIRECTORY) / text).is_dir():
        path = Path(DEFAULT_DIRECTORY) / text  # a study's name under ./hyperbrace-runs
    journal = path if path.is_file() else path / "study.journal"
    if not journal.is_file():
        hint = ""
        if path.is_dir() and any(path.glob("*/study.journal")):
            hint = f" (it holds run directories: list them with `hyperbrace ls {path}`)"
        elif not path.exists():
            hint = " (no such file or directory)"
        raise UsageError(f"{path} is not a run directory: it has no study.journal{hint}")
    from hyperbrace.journal import open_journal

    storage = open_journal(journal, repair=False)  # reading: errors name the file and line; nothing is rewritten
    return storage, journal.parent, str(journal), None


def open_target(args: argparse.Namespace) -> Target:
    """The study the arguments name (the only one in its storage, or ``--study``)."""
    storage, directory, description, url = open_storage(args)
    from hyperbrace.versions import ROOT_ATTR, latest_version_name

    studies = storage.get_all_studies()
    names = sorted(s.study_name for s in studies)
    # The versions of a study (one per space it was run with, hyperbrace.versions) are one study here.
    roots = sorted({s.user_attrs.get(ROOT_ATTR, s.study_name) for s in studies})
    name = getattr(args, "study", None)
    if name is None:
        if len(roots) != 1:
            which = f"pick one with --study: {', '.join(roots)}" if roots else "it holds none"
            raise UsageError(f"{description} holds {len(roots)} studies; {which}")
        name = latest_version_name(storage, roots[0])
    elif name in roots:
        name = latest_version_name(storage, name)  # a study's name means its latest version, as without --study
    elif name not in names:
        first = name.removesuffix("@v1")  # version 1 by number: its Optuna study carries the study's own name
        if first == name or first not in roots:
            raise UsageError(f"there is no study {name!r} in {description}; it holds: {', '.join(names) or 'none'}")
        name = first
    if directory is None:
        directory = run_directory(next((s.user_attrs.get(ROOT_ATTR, name) for s in studies if s.study_name == name),
                                       name))
    return Target(storage, name, directory, description, url=url,
                  journal=None if url is not None else Path(description))


def run_directory(root: str) -> Path:
    """Where a database study's models and logs are kept (a search run from the current directory), by default:
    ``hyperbrace-runs/<the study's name>`` (every version of it shares the one directory).

    >>> run_directory("mnist.create_model").as_posix()
    'hyperbrace-runs/mnist.create_model'
    """
    from hyperbrace.storage import _safe_dirname

    return Path(DEFAULT_DIRECTORY) / _safe_dirname(root)


def _open_database(url: str) -> optuna.storages.RDBStorage:
    """Open a database that already holds Optuna's tables (reading must not create a file or a schema)."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError as exc:
        raise UsageError(f"{url!r} is not a database URL ({exc}); e.g. sqlite:///study.db") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or not os.path.isfile(database):
            raise UsageError(f"{url}: there is no database file {database!r} (give the path the search wrote)")
    try:
        engine = sqlalchemy.create_engine(url)
        try:
            has_tables = sqlalchemy.inspect(engine).has_table("studies")
        finally:
            engine.dispose()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise UsageError(f"cannot open {_hide(url)}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if not has_tables:
        raise UsageError(f"{_hide(url)} holds no Optuna studies (no 'studies' table)")
    from hyperbrace.storage import _quiet_experimental

    with _quiet_experimental():
        return optuna.storages.RDBStorage(url, skip_table_creation=True)


def _hide(url: str) -> str:
    from hyperbrace.storage import _hide_password

    return _hide_password(url)
