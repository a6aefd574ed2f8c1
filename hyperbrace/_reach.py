"""Which functions of the user's own code a model function can reach: where ``{{...}}`` templates may be written.

A template may sit in the model function or in any function of the user's project that it calls, directly or
through other helpers: a helper in the same module or another one, imported under an alias (``import blocks as b``,
``b.build_block(...)``), a method (``self.build()``, ``Builder().build()``), or the function a decorator wraps. The
functions are found from the code objects (the global and attribute names each one uses, its closure cells, its
class for a method, ``__wrapped__``), so no source is needed to follow them and nothing runs.

"User code" is every file outside the standard library, installed packages (site-packages) and hyperbrace itself.

>>> import json
>>> def helper():
...     return 1
>>> def model():
...     return helper() + len(json.dumps({}))
>>> [f.__name__ for f in reachable_functions(model)]
['model', 'helper']
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["is_user_file", "reachable_functions"]

_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep


@functools.lru_cache(maxsize=None)
def _library_roots() -> tuple[str, ...]:
    roots = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(os.path.abspath(path) + os.sep)
    return tuple(sorted(roots))


def is_user_file(filename: str) -> bool:
    """Whether ``filename`` belongs to the user's project (not the standard library, an installed package or
    hyperbrace). Notebook cells (``<ipython-input-...>``, ``/tmp/ipykernel_.../...py``) are user code.

    >>> import json
    >>> is_user_file(json.__file__), is_user_file("/home/me/project/model.py")
    (False, True)
    """
    if not filename or filename.startswith("<frozen") or filename in ("<string>", "<stdin>"):
        return False
    if filename.startswith("<"):
        return True  # IPython's <ipython-input-N-...> cells
    path = os.path.abspath(filename)
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts or path.startswith(_HERE):
        return False
    return not any(path.startswith(root) for root in _library_roots())


def _names_used(code: types.CodeType) -> list[str]:
    """The global and attribute names ``code`` (and the functions nested in it) use, in order of first use."""
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_names_used(const))
    return list(dict.fromkeys(names))


def _functions_in(obj: Any) -> list[Any]:
    """The Python function(s) an object found by name stands for."""
    if isinstance(obj, (staticmethod, classmethod, types.MethodType)):
        obj = obj.__func__
    if isinstance(obj, functools.partial):
        obj = obj.func
    if isinstance(obj, property):
        return [f for f in (obj.fget, obj.fset, obj.fdel) if f is not None]
    return [obj] if isinstance(obj, types.FunctionType) else []


def _class_of_method(fn: types.FunctionType) -> type | None:
    """The class a method was defined in, found along its ``__qualname__`` (``Builder.build`` -> ``Builder``)."""
    parts = fn.__qualname__.split(".")[:-1]
    if not parts or "<locals>" in parts:
        return None
    obj: Any = fn.__globals__.get(parts[0])
    for part in parts[1:]:
        obj = getattr(obj, "__dict__", {}).get(part)
    return obj if isinstance(obj, type) else None


def reachable_functions(
    entry: Callable[..., Any],
    overlay: Mapping[str, Any] | None = None,
    on_library_function: Callable[[types.FunctionType], None] | None = None,
) -> Iterator[types.FunctionType]:
    """The user's functions reachable from ``entry``, depth first in the order they are used, each once.

    ``overlay`` holds extra globals the entry sees (the Hyperas layer's ``data()`` locals). ``on_library_function``
    is told of each function outside the user's code that user code refers to (to look for templates there).
    """
    seen: set[int] = set()
    stack: list[Any] = [entry]
    # The entry itself (and what wraps it) is followed even where it is not user code, e.g. a library decorator.
    entry_chain: set[int] = set()
    obj: Any = entry
    while obj is not None and id(obj) not in entry_chain:
        entry_chain.add(id(obj))
        obj = getattr(obj, "__wrapped__", None)

    def visit(fn: types.FunctionType, via_entry: bool) -> Iterator[types.FunctionType]:
        if id(fn) in seen:
            return
        seen.add(id(fn))
        user = is_user_file(fn.__code__.co_filename)
        if not user and not via_entry:
            if on_library_function is not None:
                on_library_function(fn)
            return
        if user:
            yield fn
        found: list[Any] = []
        wrapped = getattr(fn, "__wrapped__", None)
        if wrapped is not None:
            found.append(wrapped)
        for cell in fn.__closure__ or ():
            try:
                found.append(cell.cell_contents)
            except ValueError:  # an empty cell
                pass
        names = _names_used(fn.__code__)
        namespace: Mapping[str, Any] = fn.__globals__
        roots: list[Any] = []
        owner = _class_of_method(fn)
        if owner is not None:
            roots.append(owner)
        for name in names:
            if overlay is not None and fn is _unwrap(entry) and name in overlay:
                roots.append(overlay[name])
            elif name in namespace:
                roots.append(namespace[name])
        roots.extend(found)
        # Attributes: `blocks.build_block`, `Builder.build`, `self.build` (the method's own class), followed from
        # each user module or class, depth first so that functions come in the order they are used.
        containers_seen: set[int] = set()
        candidates: list[Any] = []

        def expand(obj: Any) -> None:
            candidates.append(obj)
            if isinstance(obj, types.ModuleType) and _container(obj) is None:
                # An installed module: its functions that the code names are checked, not followed.
                candidates.extend(vars(obj)[name] for name in names if isinstance(vars(obj).get(name), types.FunctionType))
                return
            container = _container(obj)
            if container is None or id(container) in containers_seen:
                return
            containers_seen.add(id(container))
            for name in names:
                for space in _namespaces(container):
                    if name in space:
                        expand(space[name])
                        break

        for root in roots:
            expand(root)
        for candidate in candidates:
            for function in _functions_in(candidate):
                yield from visit(function, id(function) in entry_chain)

    for start in stack:
        for function in _functions_in(inspect.unwrap(start)) + _functions_in(start):
            yield from visit(function, True)


def _unwrap(fn: Any) -> Any:
    fn = inspect.unwrap(fn)
    return fn.__func__ if isinstance(fn, types.MethodType) else fn


def _container(obj: Any) -> Any:
    """The user module or class whose attributes a name may reach (an instance of a user class: its class)."""
    if isinstance(obj, types.ModuleType):
        return obj if is_user_file(getattr(obj, "__file__", None) or "") else None
    if not isinstance(obj, type):
        obj = type(obj)
        if obj.__module__ in ("builtins",):
            return None
    module = sys.modules.get(obj.__module__)
    filename = getattr(module, "__file__", None) or ""
    if obj.__module__ == "__main__" and not filename:
        return obj  # a notebook's class
    return obj if is_user_file(filename) else None


def _namespaces(container: Any) -> list[Mapping[str, Any]]:
    if isinstance(container, type):
        return [klass.__dict__ for klass in container.__mro__ if klass is not object]
    return [vars(container)]
