"""``hyperbrace rm RUN [--study NAME] [--yes]``: delete a study with all its versions (and its run directory), or
one version of it, after asking.

A study whose ``{{...}}`` space changed went on as new versions (``name@v2``, ... in the same storage, see
:mod:`hyperbrace.versions`). ``rm RUN`` (or ``--study name``) deletes the study with all its versions;
``--study name@v2`` deletes that version only, with its ``v2/`` folder of models and logs (``--study name@v1``:
version 1 only, whose models and logs lie in the run directory itself). Deleting a version that is not the latest
is allowed: later versions reused copies of its trials, not the trials themselves; a model file that a later
version's reused trial still points to is kept.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hyperbrace.cli._target import UsageError, add_arguments, open_storage, run_directory

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rm = commands.add_parser(
        "rm", help="delete a study (all its versions) and its run directory, or one version (asks first)",
        description="Delete a study with all its versions: for a run directory holding only this study, the whole "
                    "directory (journal, saved models, logs); for a database, the studies' rows (the run directory "
                    "too, if there is one here). --study NAME@v2 deletes that version only (and its v2/ folder). "
                    "Asks for confirmation unless --yes is given.",
    )
    add_arguments(rm)
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask")
    rm.set_defaults(run=_rm)


def _choose(groups: dict[str, list], asked: str | None, description: str) -> tuple[str, list]:
    """(the root study, the versions to delete) that ``--study`` names (all versions for a study's name)."""
    if asked is None:
        if len(groups) != 1:
            which = f"pick one with --study: {', '.join(groups)}" if groups else "it holds none"
            raise UsageError(f"{description} holds {len(groups)} studies; {which}")
        root = next(iter(groups))
        return root, groups[root]
    if asked in groups:
        return asked, groups[asked]
    for root, versions in groups.items():
        for frozen in versions:
            if frozen.study_name == asked:
                return root, [frozen]
    match = re.fullmatch(r"(.+)@v1", asked)  # version 1 alone: its name is the study's name
    if match and match.group(1) in groups and groups[match.group(1)][0].study_name == match.group(1):
        return match.group(1), groups[match.group(1)][:1]
    names = [frozen.study_name for versions in groups.values() for frozen in versions]
    raise UsageError(f"there is no study {asked!r} in {description}; it holds: {', '.join(names) or 'none'}")


def _rm(args: argparse.Namespace) -> int:
    from hyperbrace.versions import grouped_studies, version_number

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage, directory, description, url = open_storage(args)
    groups = grouped_studies(storage)
    root, doomed = _choose(groups, getattr(args, "study", None), description)
    versions = groups[root]
    whole = len(doomed) == len(versions)
    if directory is None:
        directory = run_directory(root)
    trials = {frozen.study_name: storage.get_all_trials(frozen._study_id, deepcopy=False) for frozen in versions}
    running = sum(t.state == TrialState.RUNNING for frozen in doomed for t in trials[frozen.study_name])
    listing = "".join(f"\n  version {version_number(f)}: {f.study_name!r} ({_count(trials[f.study_name])})"
                      for f in doomed)
    if whole:
        others = [r for r in groups if r != root]
        remove_dir = directory.is_dir() and (url is not None or not others)
        count = _count([t for f in versions for t in trials[f.study_name]])
        what = f"study {root!r} ({f'{len(versions)} versions, ' if len(versions) > 1 else ''}{count}) in {description}"
        if remove_dir:
            what += f", and the directory {directory} (saved models, logs)"
        note = f", its versions:{listing}" if len(versions) > 1 else ""
    else:
        (frozen,) = doomed
        number = version_number(frozen)
        folder = f"its folder {directory / f'v{number}'}" if number > 1 else f"models/ and logs/ in {directory}"
        what = (f"version {number} of study {root!r}, {frozen.study_name!r} ({_count(trials[frozen.study_name])}) "
                f"in {description}, with its saved models and logs ({folder})")
        later = [v for v in versions if version_number(v) > number]
        note = ("\n  Later versions keep the trials they reused from it (copies); a model file one of them still "
                f"uses is kept. The other versions: {', '.join(v.study_name for v in versions if v is not frozen)}."
                if later else "")
    warning = f"\n  {running} of its trials are RUNNING: stop the search first." if running else ""
    if not args.yes:
        if not sys.stdin.isatty() and sys.stdin.closed:
            raise UsageError("cannot ask for confirmation here; add --yes")
        print(f"Delete {what}?{note}{warning}", file=sys.stderr)
        try:
            answer = input("Type y to delete, anything else to keep it: ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("kept; nothing was deleted", file=sys.stderr)
            return 1
    if whole:
        if not (remove_dir and url is None):  # a journal holding only this study goes with its directory
            for frozen in versions:
                optuna.delete_study(study_name=frozen.study_name, storage=storage)
        if remove_dir:
            shutil.rmtree(directory)
    else:
        optuna.delete_study(study_name=frozen.study_name, storage=storage)
        keep = {str(t.user_attrs["hb.model"]) for v in versions if v is not frozen
                for t in trials[v.study_name] if t.user_attrs.get("hb.model")}
        _remove_version_files(directory, number, keep)
    print(f"deleted {what}{note}", file=sys.stderr)
    return 0


def _count(trials: list[optuna.trial.FrozenTrial]) -> str:
    """``8 trials``, or ``4 trials, 5 reused`` for a version that reused trials of earlier ones."""
    from hyperbrace.budget import is_reused

    reused = sum(1 for t in trials if is_reused(t))
    return f"{len(trials) - reused} trials" + (f", {reused} reused" if reused else "")


def _remove_version_files(directory: Path, number: int, keep: set[str]) -> None:
    """Delete version ``number``'s models and logs (``v<k>/``, or ``models/`` and ``logs/`` for version 1) except
    the files in ``keep`` (paths relative to the run directory that other versions' trials point to)."""
    if not directory.is_dir():
        return
    base = directory / f"v{number}" if number > 1 else directory
    roots = [base] if number > 1 else [directory / "models", directory / "logs"]
    for top in roots:
        if not top.is_dir():
            continue
        for path in sorted(top.rglob("*"), reverse=True):  # files first, then the folders they emptied
            if path.is_dir():
                if not any(path.iterdir()):
                    path.rmdir()
            elif path.relative_to(directory).as_posix() not in keep:
                path.unlink()
        if not any(top.iterdir()):
            top.rmdir()
