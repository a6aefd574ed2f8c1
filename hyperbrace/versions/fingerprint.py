"""A search space as the study records it, and what changed between two of them.

Each template name maps to a :class:`Param`: its distribution's kind (``uniform``, ``choice``...), the distribution
built from the template's literal arguments (``uniform(0.2, 0.5)``), the template text and where it is written.
The study keeps this record (user attribute ``hyperbrace.fingerprint``), so a later run can say, per name, what changed.

Two parameters are the same when their distributions are equal. Arguments naming module globals or closure
variables (``choice(SIZES)``) are evaluated for this when the search starts; where an argument is known only in a
trial (a local variable, a call), the template texts are compared. Moving a template to another line or
reformatting it changes nothing.

>>> from hyperbrace.template import compile_model
>>> def before():
...     units = {{choice([32, 64, 128])}}
...     rate = {{uniform(0, 1)}}
...     momentum = {{uniform(0, 1)}}
>>> def after():
...     units = {{choice([16, 256])}}
...     rate = {{uniform(0.2, 0.5)}}
...     lr = {{loguniform(1e-4, 1e-1)}}
>>> for change in changes(space_of(compile_model(before)), space_of(compile_model(after))):
...     print(change)
units: options changed, choice([32, 64, 128]) -> choice([16, 256])
rate: range changed, uniform(0, 1) -> uniform(0.2, 0.5)
momentum: removed (was uniform(0, 1))
lr: added, loguniform(0.0001, 0.1)
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.distributions import distribution_to_json

from hyperbrace.space import Distribution

__all__ = ["Param", "Change", "space_of", "space_from_json", "space_to_json", "changes", "SPACE_ATTR"]

#: The study user attribute holding its space (a list of :meth:`Param.to_json` records).
SPACE_ATTR = "hyperbrace.fingerprint"
#: What hyperbrace recorded before spaces had versions: ``["name: template text", ...]``.
LEGACY_ATTR = "hyperbrace.templates"

_OPTIONS_KINDS = ("choice", "pchoice")


@dataclass(frozen=True)
class Param:
    """One template name of a space."""

    name: str  #: the parameter name; for a ``name=f"..."`` template, the expression that makes the names
    kind: str  #: the distribution's name: ``"uniform"``, ``"choice"``...
    distribution: str | None  #: the distribution from the literal arguments; ``None`` if known only in a trial
    template: str  #: the template as written
    where: str = ""  #: ``file.py:LINE``
    dynamic: bool = False  #: whether the name is computed in the trial (``name=f"units_{i}"``)
    engine: str | None = None  #: the engine (Optuna) distribution, as JSON, where known
    #: the distribution object (only for the space of the model being run, never read back from a study)
    object: Distribution | None = field(default=None, compare=False, repr=False)

    @property
    def text(self) -> str:
        return self.distribution if self.distribution is not None else self.template

    def same_as(self, other: Param) -> bool:
        """Whether both sample the same values the same way (see the module's docstring)."""
        if self.kind != other.kind or self.dynamic != other.dynamic:
            return False
        if self.distribution is not None and other.distribution is not None:
            return self.distribution == other.distribution and self.engine == other.engine
        return _squeeze(self.template) == _squeeze(other.template)

    def matches(self, param_name: str) -> bool:
        """Whether ``param_name`` (a name stored in a trial) comes from this template."""
        return _name_pattern(self.name).fullmatch(param_name) is not None if self.dynamic else param_name == self.name

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "distribution": self.distribution, "template": self.template,
            "where": self.where, "dynamic": self.dynamic, "engine": self.engine,
        }


@dataclass(frozen=True)
class Change:
    """How one name differs between two spaces."""

    name: str
    what: str  #: "added", "removed", "distribution", "options" or "range"
    before: Param | None
    after: Param | None

    def __str__(self) -> str:
        if self.what == "added":
            assert self.after is not None
            return f"{self.name}: added, {self.after.text}"
        if self.what == "removed":
            assert self.before is not None
            return f"{self.name}: removed (was {self.before.text})"
        assert self.before is not None and self.after is not None
        return f"{self.name}: {self.what} changed, {self.before.text} -> {self.after.text}"


def space_of(compiled: Any) -> dict[str, Param]:
    """The space of a compiled model function: name -> :class:`Param`, in source order.

    A name written at several places (``name="x"`` twice, which must be the same distribution) appears once.
    """
    space: dict[str, Param] = {}
    for site in compiled.sites:
        if site.name in space:
            continue
        dist = site.static_distribution
        if dist is None:
            dist = _from_globals(compiled, site)
        engine = None
        if dist is not None:
            try:
                engine = distribution_to_json(dist.engine_distribution())
            except Exception:  # noqa: BLE001  (an option Optuna cannot store: compare by text instead)
                engine = None
        space[site.name] = Param(
            name=site.name, kind=site.distribution, distribution=None if dist is None else repr(dist),
            template=site.text, where=f"{Path(site.filename).name}:{site.lineno}", dynamic=site.dynamic_name,
            engine=engine, object=dist,
        )
    return space


def space_to_json(space: dict[str, Param]) -> list[dict[str, Any]]:
    return [param.to_json() for param in space.values()]


def space_from_json(records: Any, legacy: Any = None) -> dict[str, Param] | None:
    """The space a study recorded (``None`` if it recorded none). ``legacy`` reads the older record,
    ``["name: template", ...]``, which has texts only."""
    if isinstance(records, list):
        space = {}
        for record in records:
            param = Param(**{k: record.get(k) for k in ("name", "kind", "distribution", "template")},
                          where=record.get("where") or "", dynamic=bool(record.get("dynamic")),
                          engine=record.get("engine"))
            space[param.name] = param
        return space
    if isinstance(legacy, list):
        space = {}
        for entry in legacy:
            name, _, text = str(entry).partition(": ")
            kind = re.match(r"\{\{\s*(\w+)", text)
            space.setdefault(name, Param(name=name, kind=kind.group(1) if kind else "", distribution=None,
                                         template=text, dynamic=name.startswith(("f'", 'f"'))))
        return space
    return None


def changes(old: dict[str, Param], new: dict[str, Param]) -> list[Change]:
    """Per name, what changed from ``old`` to ``new`` (names in ``old``'s order, then the added ones)."""
    found = []
    for name, before in old.items():
        after = new.get(name)
        if after is None:
            found.append(Change(name, "removed", before, None))
        elif not before.same_as(after):
            if before.kind != after.kind or before.dynamic != after.dynamic:
                what = "distribution"
            else:
                what = "options" if before.kind in _OPTIONS_KINDS else "range"
            found.append(Change(name, what, before, after))
    found.extend(Change(name, "added", None, after) for name, after in new.items() if name not in old)
    return found


#: Nodes an argument may hold to be evaluated before the search (no calls: nothing of the user's code runs).
_PLAIN_NODES = (ast.Expression, ast.Name, ast.Attribute, ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict,
                ast.UnaryOp, ast.BinOp, ast.Subscript, ast.Slice, ast.Load, ast.operator, ast.unaryop, ast.Starred)


def _from_globals(compiled: Any, site: Any) -> Distribution | None:
    """The distribution of a template whose arguments name module globals or closure variables
    (``choice(SIZES)``, ``uniform(0, MAX_RATE)``), so that changing the global is a change of the space too.
    ``None`` where an argument is a local variable of the model function, or calls anything."""
    try:
        node = ast.parse(site.text, mode="eval").body
        call = node.elts[0].elts[0]  # {{ call }} is a set in a set
        assert isinstance(call, ast.Call)
    except (SyntaxError, AttributeError, IndexError, AssertionError):
        return None
    arguments = ast.Expression(ast.Tuple([*call.args, *(k.value for k in call.keywords if k.arg != "name")],
                                         ast.Load()))
    if not all(isinstance(n, _PLAIN_NODES) for n in ast.walk(arguments)):
        return None
    function = getattr(compiled.original, "__func__", compiled.original)
    code = function.__code__
    names = {n.id for n in ast.walk(arguments) if isinstance(n, ast.Name)}
    if names & set(code.co_varnames + code.co_cellvars):
        return None  # a local of the model function: known only in a trial
    namespace = dict(function.__globals__)
    namespace.update(compiled._globals_overlay or {})
    for name, cell in zip(code.co_freevars, function.__closure__ or ()):
        try:
            namespace[name] = cell.cell_contents
        except ValueError:
            return None
    table = compiled._distributions or _distribution_table()
    make = table.get(site.distribution)
    if make is None:
        return None
    try:
        values = eval(compile(ast.fix_missing_locations(arguments), site.filename, "eval"), namespace)
        keywords = {k.arg: v for k, v in zip([k for k in call.keywords if k.arg != "name"], values[len(call.args):])}
        return make(*values[: len(call.args)], **keywords)
    except Exception:  # noqa: BLE001  (anything unusual: compare the template's text instead)
        return None


def _distribution_table() -> dict[str, Any]:
    from hyperbrace import space

    return space.DISTRIBUTIONS


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


@functools.lru_cache(maxsize=256)
def _name_pattern(expression: str) -> re.Pattern[str]:
    """The names a ``name=`` expression can make: ``f"units_{i}"`` -> ``units_(.+?)``; anything else -> any name.

    >>> bool(_name_pattern('f"units_{i}"').fullmatch("units_3")), bool(_name_pattern('f"units_{i}"').fullmatch("lr"))
    (True, False)
    """
    try:
        node = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return re.compile(".+")
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.compile(re.escape(node.value))
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(re.escape(value.value))
            else:
                parts.append("(.+?)")
        return re.compile("".join(parts))
    return re.compile(".+")
