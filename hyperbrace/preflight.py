"""Pre-flight: the mistakes found before the first trial, and the failures that stop a search at its first trial.

* The model's parameters against what ``data()`` returns: from ``data()``'s ``return`` statements before anything
  runs (:func:`check_data_returns`), and from its value once it has run, before a trial is asked
  (:func:`check_arguments`). A mismatch would fail every trial alike.
* A trial that fails with an error that no configuration can cause or cure (``NameError``, ``ImportError``,
  ``SyntaxError``, or the model's own signature not accepting its arguments) is a bug in the code: the search stops
  at that first trial (:func:`is_configuration_independent`) instead of running three full trainings first. Other
  errors keep the streak rule (:data:`hyperbrace.search.FAILURE_STREAK` first trials failing alike).
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import traceback
import types
from collections.abc import Callable
from typing import Any

from hyperbrace.template import CompiledModel, TemplateError

__all__ = ["ModelArgumentsError", "check_data_returns", "check_arguments", "is_configuration_independent"]


_NO_DATA = object()  #: minimize() was given no data function (``data=None`` means: not known here)


class ModelArgumentsError(TemplateError, TypeError):
    """The model function cannot take what ``data()`` returns; found before the first trial."""


def _signature(model: CompiledModel) -> inspect.Signature | None:
    try:
        return inspect.signature(model.original)
    except (TypeError, ValueError):
        return None


def _data_where(data: Any) -> str:
    code = getattr(inspect.unwrap(data), "__code__", None) if data not in (None, _NO_DATA) else None
    return f' (File "{code.co_filename}", line {code.co_firstlineno})' if code is not None else ""


def _error(model: CompiledModel, signature: inspect.Signature, returned: str, why: str, data: Any) -> ModelArgumentsError:
    params = [p.name for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if data is _NO_DATA:
        return ModelArgumentsError(
            f"{model.name}{signature} takes arguments ({why}) but minimize() was given no data function; pass "
            f"data=, a function that returns them, e.g. `def data(): ...; return {', '.join(params)}`",
            filename=model.filename, lineno=model.lineno, text=f"def {model.name}{signature}:", function=model.name,
        )
    return ModelArgumentsError(
        f"{model.name}{signature} cannot take what data(){_data_where(data)} returns: {returned} ({why}). Return the "
        f"model's arguments from data() in order, e.g. `return {', '.join(params) or '...'}` (a tuple fills the "
        f"parameters in order, a dict fills them by name), or change {model.name}()'s parameters to match",
        filename=model.filename, lineno=model.lineno, text=f"def {model.name}{signature}:", function=model.name,
    )


def _describe(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    if kwargs:
        return f"a dict with keys {sorted(kwargs)}"
    if len(args) == 1:
        return f"one value (a {type(args[0]).__name__})"
    return f"{len(args)} values (a tuple)"


def check_arguments(model: CompiledModel, args: tuple[Any, ...], kwargs: dict[str, Any], data: Any = None) -> None:
    """Raise :class:`ModelArgumentsError` if the model cannot be called with ``data()``'s value.

    >>> from hyperbrace.template import compile_model
    >>> def create_model(x_train, y_train, x_val, y_val):
    ...     return {{uniform(0, 1)}}
    >>> check_arguments(compile_model(create_model), ([1], [2]), {})
    Traceback (most recent call last):
    ...
    hyperbrace.preflight.ModelArgumentsError: File "<doctest ...>", line 1, in create_model
        def create_model(x_train, y_train, x_val, y_val):
    create_model(x_train, y_train, x_val, y_val) cannot take what data() returns: 2 values (a tuple) (missing a required argument: 'x_val'). Return the model's arguments from data() in order, e.g. `return x_train, y_train, x_val, y_val` (a tuple fills the parameters in order, a dict fills them by name), or change create_model()'s parameters to match
    """
    signature = _signature(model)
    if signature is None or not signature.parameters:
        return  # a model without parameters is called without data() (search.call_with_data)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise _error(model, signature, _describe(args, kwargs), str(exc), data) from None


def _own_returns(node: ast.AST) -> list[ast.Return]:
    found: list[ast.Return] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(child, ast.Return):
            found.append(child)
        found.extend(_own_returns(child))
    return found


def check_data_returns(model: CompiledModel, data: Callable[..., Any] | None) -> None:
    """Before ``data()`` runs: where every ``return`` of ``data()`` is a literal tuple (or a dict with literal keys)
    of one size, check that the model takes that many arguments (those names); raise :class:`ModelArgumentsError`.
    Where the returns say nothing certain, the check waits for the value (:func:`check_arguments`).

    >>> from hyperbrace.template import compile_model
    >>> def data():
    ...     return [1, 2], [0, 1]
    >>> def create_model(x_train, y_train, x_val, y_val):
    ...     return {{uniform(0, 1)}}
    >>> check_data_returns(compile_model(create_model), data)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hyperbrace.preflight.ModelArgumentsError: ... cannot take what data() (File "<doctest ...>", line 1) returns: 2 values (a tuple) ...
    """
    if data is None:
        signature = _signature(model)
        required = [p for p in (signature.parameters.values() if signature else ())
                    if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if required:  # called without arguments (search.call_with_data), it would fail in every trial
            check_arguments(model, (), {}, _NO_DATA)
        return
    function = inspect.unwrap(data)
    if not isinstance(function, types.FunctionType) or function.__name__ == "<lambda>":
        return  # a lambda's source is the line it sits in: its value is checked once data() has run
    try:
        node = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    except (OSError, TypeError, SyntaxError, IndexError):
        return
    returns = _own_returns(node)
    if not returns or any(r.value is None for r in returns):
        return
    shapes = set()
    for ret in returns:
        value = ret.value
        if isinstance(value, ast.Tuple) and not any(isinstance(e, ast.Starred) for e in value.elts):
            shapes.add(("tuple", len(value.elts)))
        elif isinstance(value, ast.Dict) and all(isinstance(k, ast.Constant) and isinstance(k.value, str)
                                                 for k in value.keys):
            shapes.add(("dict", tuple(sorted(k.value for k in value.keys))))  # type: ignore[union-attr]
        else:
            return
    if len(shapes) != 1:
        return
    (kind, shape), = shapes
    args: tuple[Any, ...] = (None,) * shape if kind == "tuple" else ()  # type: ignore[operator]
    kwargs = {key: None for key in shape} if kind == "dict" else {}  # type: ignore[union-attr]
    check_arguments(model, args, kwargs, data)


def is_configuration_independent(error: BaseException | None, model: CompiledModel) -> bool:
    """Whether a trial's error is one that every configuration would meet: a ``NameError``, ``ImportError`` or
    ``SyntaxError``, or a ``TypeError`` from calling the model itself with arguments it does not take.

    >>> from hyperbrace.template import compile_model
    >>> def create_model(x):
    ...     return {{uniform(0, 1)}} * x
    >>> model = compile_model(create_model)
    >>> is_configuration_independent(NameError("name 'lr' is not defined"), model)
    True
    >>> is_configuration_independent(ValueError("loss diverged"), model)
    False
    """
    if error is None:
        return False
    if isinstance(error, (NameError, ImportError, SyntaxError)):
        return True
    if isinstance(error, TypeError):
        # Calling the model failed before its first line ran (no frame of the model's body in the traceback).
        frames = traceback.extract_tb(error.__traceback__)
        entered = any(f.name == model.name and f.filename == model.filename for f in frames)
        message = str(error)
        return not entered and message.startswith(f"{model.name}() ") and "argument" in message
    return False
