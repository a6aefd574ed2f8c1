"""A run's saved models: each records which study and trial it belongs to, and only files in the run directory's
``models/`` folders are ever loaded.

A trial's model is saved as ``models/trial-NNNNN.<suffix>`` with ``models/trial-NNNNN.owner.json`` beside it,
holding the study's name and the trial's number; the trial records the same owner (``hb.model_owner``). Loading
checks both, so a model that another study saved over this one (two studies sharing a folder) is refused instead
of silently returned. The path a trial records (``hb.model``) comes from the storage, which other machines (or
whoever can write the database) write: it is followed only into a ``models/`` folder of the run directory, because
loading a model (a pickle, a Keras file with Python layers) can run code.

>>> import tempfile
>>> from pathlib import Path
>>> run = Path(tempfile.mkdtemp())
>>> model_path(run, "../../etc/passwd")
Traceback (most recent call last):
...
hyperbrace.model_files.UnsafeModelPathError: the stored model path '../../etc/passwd' leads outside .../models; hyperbrace loads models only from the run directory's models folders (a storage writer may have changed it)
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from hyperbrace._warnings import user_stacklevel

__all__ = ["UnsafeModelPathError", "ModelOwnerError", "model_path", "write_owner", "check_owner", "owner_of",
           "owner_file", "trial_number"]

_OWNER_SUFFIX = ".owner.json"


class UnsafeModelPathError(ValueError):
    """A trial's stored model path leads outside the run directory's ``models/``."""


class ModelOwnerError(RuntimeError):
    """A model file belongs to another study or trial than the one loading it."""


def owner_of(study_name: str, number: int) -> dict[str, Any]:
    """The owner record of trial ``number`` of study ``study_name``."""
    return {"study": study_name, "trial": int(number)}


def _owner_file(models_dir: Path, number: int) -> Path:
    return models_dir / f"trial-{number:05d}{_OWNER_SUFFIX}"


def trial_number(file: Path) -> int | None:
    """The trial a file of ``models/`` belongs to (its model or its owner record), from its name.

    >>> trial_number(Path("trial-00012.keras")), trial_number(Path("trial-00012.owner.json")), trial_number(Path("x"))
    (12, 12, None)
    """
    number = file.name.split(".")[0].partition("trial-")[2]
    return int(number) if number.isdigit() else None


def owner_file(model: Path) -> Path:
    """The owner record beside the saved model ``model``.

    >>> owner_file(Path("models/trial-00012.keras")).as_posix()
    'models/trial-00012.owner.json'
    """
    number = trial_number(model)
    return model.with_name(model.name + _OWNER_SUFFIX) if number is None else _owner_file(model.parent, number)


def write_owner(models_dir: Path, study_name: str, number: int) -> dict[str, Any]:
    """Record beside trial ``number``'s model which study and trial it belongs to; returns the record."""
    owner = owner_of(study_name, number)
    _owner_file(models_dir, number).write_text(json.dumps(owner))
    return owner


def model_path(run_dir: Path, relative: str) -> Path:
    """The model file a trial's stored path names, if it lies in a ``models/`` folder inside ``run_dir`` (``models/``
    or a study version's ``v2/models/``; symbolic links followed); raises :class:`UnsafeModelPathError` otherwise."""
    root = Path(run_dir).resolve()
    path = (Path(run_dir) / relative).resolve()
    if not path.is_relative_to(root) or path.parent.name != "models":
        raise UnsafeModelPathError(
            f"the stored model path {relative!r} leads outside {root / 'models'}; hyperbrace loads models only "
            "from the run directory's models folders (a storage writer may have changed it)"
        )
    return path


def check_owner(path: Path, expected: dict[str, Any]) -> None:
    """Raise :class:`ModelOwnerError` unless the model at ``path`` was saved by ``expected`` (study and trial).

    A model saved before owners were recorded is loaded with a warning that it could not be checked.
    """
    record = owner_file(path)
    try:
        owner = json.loads(record.read_text())
    except FileNotFoundError:
        owner = None
    except (OSError, ValueError) as exc:
        raise ModelOwnerError(f"{record} (the owner of {path.name}) cannot be read: {exc}") from None
    if owner is None:
        warnings.warn(f"{path} records no owner (saved by an older hyperbrace): loading it unchecked",
                      stacklevel=user_stacklevel())
        return
    if owner.get("study") != expected.get("study") or owner.get("trial") != expected.get("trial"):
        raise ModelOwnerError(
            f"{path} belongs to trial {owner.get('trial')} of study {owner.get('study')!r}, not to trial "
            f"{expected.get('trial')} of study {expected.get('study')!r}: another study wrote into this run "
            f"directory ({path.parent.parent}), so this trial's own model is gone. Give each study its own directory "
            "(distinct study names get distinct folders)."
        )
