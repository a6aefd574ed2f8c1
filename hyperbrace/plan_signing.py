"""The published plan is signed: ``hyperbrace worker`` runs only a plan signed with a key the user controls.

A plan published in a database study is pickled code that every ``hyperbrace worker`` joining the study unpickles
and runs. Whoever can write the database could put another plan there; an HMAC-SHA256 over the plan (and the
study's name, so a plan cannot be moved to another study) with a key that the database does not hold lets a
worker tell the chief's plan from any other, before unpickling anything.

The key, on the chief (the process calling ``minimize(storage=URL)``):

* the environment variable ``HYPERBRACE_PLAN_KEY``, when set (the same secret on every machine: the simplest set-up
  for a cluster);
* else the file ``.plan-key`` in the run directory, made on first use with a random key, readable by its owner only
  (mode 0600). Workers on the same machine or a shared file system find it by themselves; copy its content into
  ``HYPERBRACE_PLAN_KEY`` (or pass ``--plan-key-file``) for workers elsewhere.
* ``HYPERBRACE_PLAN_KEY=off`` publishes the plan unsigned (a private database only you can write); workers then
  need ``--allow-unsigned-plan``, an explicit choice on their side too.

>>> blob = b"the pickled plan"
>>> signed = sign(blob, "study", b"key")
>>> verify(signed, "study", b"key") == blob
True
>>> verify(signed, "study", b"another key")
Traceback (most recent call last):
...
hyperbrace.plan_signing.PlanAuthenticationError: the plan published in study 'study' does not match its signature: it was changed after the chief signed it, or signed with another key than this worker's; refusing to run it (set HYPERBRACE_PLAN_KEY to the chief's key)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import stat
import warnings
from pathlib import Path
from typing import Any

from hyperbrace._warnings import user_stacklevel

__all__ = ["KEY_ENV", "KEY_FILE", "PlanAuthenticationError", "chief_key", "worker_key", "sign", "verify"]

KEY_ENV = "HYPERBRACE_PLAN_KEY"
KEY_FILE = ".plan-key"
_OFF = ("off", "none", "unsigned")
_FORMAT = "hyperbrace-plan/1"


class PlanAuthenticationError(RuntimeError):
    """The published plan is unsigned, tampered with, or this worker has no key to check it."""


def _env_key() -> tuple[bool, bytes | None]:
    """(whether the environment decides, the key or None for off)."""
    value = os.environ.get(KEY_ENV)
    if value is None or not value.strip():
        return False, None
    if value.strip().lower() in _OFF:
        return True, None
    return True, value.strip().encode()


def _read_key_file(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PlanAuthenticationError(
            f"{path} can be read by other users (mode {stat.S_IMODE(mode):04o}): anyone who reads it can sign plans "
            f"that workers run. Make it private with `chmod 600 {path}`"
        )
    key = path.read_bytes().strip()
    if not key:
        raise PlanAuthenticationError(f"{path} is empty; delete it to have a new key made, or write the key in it")
    return key


def chief_key(run_dir: Path, announce: bool = True) -> bytes | None:
    """The key the chief signs with (see the module's docstring); None when signing is turned off. ``announce``:
    warn where a newly made key file is (a database search, whose workers elsewhere need it)."""
    decided, key = _env_key()
    if decided:
        return key
    path = Path(run_dir) / KEY_FILE
    if not path.exists() and _make_key_file(path) and announce:
        warnings.warn(
            f"the plan published for `hyperbrace worker` is signed with a new key, {path.resolve()} (private to "
            f"you). Workers on other machines need it: set {KEY_ENV} to its content there, or to a secret of your "
            "own on every machine (chief included)",
            stacklevel=user_stacklevel(),
        )
    return _read_key_file(path)


def _make_key_file(path: Path) -> bool:
    """Write a random key to ``path`` (mode 0600), whole or not at all; False if another process made it first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f"{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32) + "\n")
        os.link(scratch, path)  # fails if it exists: every process then reads the same key
        return True
    except FileExistsError:
        return False
    finally:
        scratch.unlink(missing_ok=True)


def worker_key(run_dir: Path | None = None, key_file: str | os.PathLike[str] | None = None) -> bytes | None:
    """The key a worker checks plans with: ``key_file``, else ``HYPERBRACE_PLAN_KEY``, else the run directory's
    ``.plan-key``; None when there is none (or the environment says ``off``)."""
    if key_file is not None:
        return _read_key_file(Path(key_file))
    decided, key = _env_key()
    if decided:
        return key
    if run_dir is not None and (Path(run_dir) / KEY_FILE).is_file():
        return _read_key_file(Path(run_dir) / KEY_FILE)
    return None


def _mac(blob: bytes, study_name: str, key: bytes) -> str:
    return hmac.new(key, study_name.encode() + b"\0" + blob, hashlib.sha256).hexdigest()


def sign(blob: bytes, study_name: str, key: bytes | None) -> dict[str, Any]:
    """The value stored in the study for the pickled plan ``blob`` (unsigned when ``key`` is None)."""
    return {
        "format": _FORMAT,
        "plan": base64.b64encode(blob).decode("ascii"),
        "hmac-sha256": None if key is None else _mac(blob, study_name, key),
    }


def verify(value: Any, study_name: str, key: bytes | None, allow_unsigned: bool = False) -> bytes:
    """The pickled plan in ``value`` if its signature is the chief's; raises :class:`PlanAuthenticationError`
    (before anything is unpickled) otherwise."""
    if isinstance(value, str):  # published by a hyperbrace that did not sign plans
        blob, mac = base64.b64decode(value), None
    elif isinstance(value, dict) and value.get("format") == _FORMAT and isinstance(value.get("plan"), str):
        blob, mac = base64.b64decode(value["plan"]), value.get("hmac-sha256")
    else:
        raise PlanAuthenticationError(f"the plan published in study {study_name!r} is not in a form this hyperbrace "
                                      "reads; refusing to run it")
    if mac is None:
        if allow_unsigned:
            return blob
        raise PlanAuthenticationError(
            f"the plan published in study {study_name!r} is not signed (its chief ran with {KEY_ENV}=off, or an "
            "older hyperbrace published it). A plan is code this worker would run, and anyone who can write the "
            "database could have put it there: pass --allow-unsigned-plan only if you trust every writer of it"
        )
    if key is None:
        raise PlanAuthenticationError(
            f"the plan published in study {study_name!r} is signed, and this worker has no key to check it: set "
            f"{KEY_ENV} to the chief's key (the content of {KEY_FILE} in the chief's run directory, unless the chief "
            f"set {KEY_ENV} itself), or pass --plan-key-file"
        )
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(blob, study_name, key)):
        raise PlanAuthenticationError(
            f"the plan published in study {study_name!r} does not match its signature: it was changed after the "
            "chief signed it, or signed with another key than this worker's; refusing to run it (set "
            f"{KEY_ENV} to the chief's key)"
        )
    return blob
