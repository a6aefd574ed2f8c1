"""What must not be published in a study: passwords in database URLs, and captured globals that look like credentials.

A search on a database publishes its plan there (the model and data functions, pickled) so that ``hyperbrace worker``
can join from any machine; anyone who can read the database can read the plan. Functions defined in a script or a
notebook are pickled by value, with the globals and closure values they use: a ``API_TOKEN = "..."`` the model
refers to would travel with them. :func:`strip_credentials` finds such values and returns a copy of the function
without them, to publish instead (workers then get them from their own environment).

>>> hide_password("postgresql://hb:s3cret@db/hb")
'postgresql://hb:***@db/hb'
>>> looks_like_credential("API_TOKEN", "abc"), looks_like_credential("n_units", 64), looks_like_credential("AUTHOR", "me")
(True, False, False)
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from typing import Any

__all__ = ["hide_password", "looks_like_credential", "strip_credentials", "without_credentials"]

_NAME = re.compile(r"(^|_)(pass(word|wd)?|pwd|secret|token|api_?key|access_?key|private_?key|credentials?"
                   r"|auth(orization|_?token|_?key)?)($|_)", re.I)
_URL_WITH_PASSWORD = re.compile(r"://[^:/@\s]+:[^@\s]+@")


def hide_password(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def looks_like_credential(name: str, value: Any) -> bool:
    """Whether a global named ``name`` holding ``value`` should not be published: a credential-like name holding a
    string or bytes, or a string that is a URL with a password."""
    if isinstance(value, (str, bytes)) and _NAME.search(name):
        return True
    return isinstance(value, str) and bool(_URL_WITH_PASSWORD.search(value))


def _names_used(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


def _pickled_by_value(function: Callable[..., Any]) -> bool:
    try:
        from cloudpickle.cloudpickle import _should_pickle_by_reference

        return not _should_pickle_by_reference(function)
    except Exception:  # noqa: BLE001  (a cloudpickle without this helper: assume the worst)
        return True


def strip_credentials(function: Any) -> tuple[Any, list[str]]:
    """A copy of ``function`` whose published form carries no credential-looking globals or closure values, and
    their names. Functions pickled by reference (importable modules) carry none and are returned as they are."""
    if not isinstance(function, types.FunctionType) or not _pickled_by_value(function):
        return function, []
    found = sorted(name for name in _names_used(function.__code__) & function.__globals__.keys()
                   if looks_like_credential(name, function.__globals__[name]))
    cells = list(function.__closure__ or ())
    hidden_cells = []
    for index, (name, cell) in enumerate(zip(function.__code__.co_freevars, cells)):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if looks_like_credential(name, value):
            hidden_cells.append(name)
            cells[index] = types.CellType()
    if not found and not hidden_cells:
        return function, []
    namespace = {k: v for k, v in function.__globals__.items() if k not in found}
    copy = types.FunctionType(function.__code__, namespace, function.__name__, function.__defaults__,
                              tuple(cells) if function.__closure__ else None)
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__qualname__ = function.__qualname__
    copy.__module__ = function.__module__
    copy.__doc__ = function.__doc__
    copy.__dict__.update(function.__dict__)
    return copy, found + sorted(hidden_cells)


def without_credentials(obj: Any) -> tuple[Any, list[str]]:
    """A copy of ``obj`` (a plan) in which every function pickled by value carries no credential-looking globals or
    closure values, however deep it sits (the model, the helpers it calls, ``data()``), and their names."""
    import io
    import pickle

    import cloudpickle

    found: list[str] = []

    class Scrubber(cloudpickle.Pickler):
        def reducer_override(self, value: Any) -> Any:
            if isinstance(value, types.FunctionType):
                stripped, names = strip_credentials(value)
                if names:
                    found.extend(f"{name} (used by {value.__name__}())" for name in names)
                    value = stripped
            return super().reducer_override(value)

    buffer = io.BytesIO()
    Scrubber(buffer, protocol=pickle.DEFAULT_PROTOCOL).dump(obj)
    if not found:
        return obj, []
    return pickle.loads(buffer.getvalue()), sorted(set(found))
