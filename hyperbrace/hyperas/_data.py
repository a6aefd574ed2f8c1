"""``data()`` the Hyperas way: run once, keep its return value *and* its local variables.

Hyperas pasted ``data()``'s body at the top level of a generated module, so every local variable of ``data()``
(``nb_classes``, ``max_features``, a tokenizer...) was a global of the model function, whatever the model's
parameters were called. hyperbrace runs ``data()`` as the function it is, keeping hold of its frame, and reads
the frame's local variables once it has returned; the model is compiled with them as extra globals, and the
functions given in ``functions=`` are rebuilt to see them too.

>>> def data():
...     nb_classes = 3
...     return [0, 1, 2], [2, 1, 0]
>>> run = run_data(data, None)
>>> run.value, run.locals["nb_classes"]
(([0, 1, 2], [2, 1, 0]), 3)
"""

from __future__ import annotations

import inspect
import sys
import types
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DataRun", "run_data", "model_arguments", "with_data_globals"]


@dataclass
class DataRun:
    """What one call of ``data()`` gave: its return value and its local variables when it returned."""

    value: Any = None
    locals: dict[str, Any] = field(default_factory=dict)


def run_data(data: Callable[..., Any] | None, data_args: Any) -> DataRun:
    """Call ``data(*data_args)`` once, recording its local variables as it returns."""
    if data is None:
        return DataRun()
    if not callable(data):
        raise TypeError(f"data must be a function (Hyperas' data()), got {data!r}")
    args, kwargs = _data_call_arguments(data_args)
    code = getattr(inspect.unwrap(data), "__code__", None)
    if code is None:  # a callable object or a builtin: no Python frame to read locals from
        return DataRun(data(*args, **kwargs), {})
    previous = sys.getprofile()
    # data()'s frame is taken as data() starts, through the profile hook, which is then handed back at once: data()
    # runs at full speed, and its frame object keeps the final locals after it returns. A profile hook (not a trace
    # hook) so that debuggers and coverage, which trace, are not disturbed. Python holds one profile hook per
    # thread: a profiler written in Python gets every event passed on; a C profiler (cProfile) pauses meanwhile.
    chained = previous if callable(previous) else None
    paused = previous if previous is not None and chained is None and hasattr(previous, "enable") else None
    if previous is not None and chained is None and paused is None:
        warnings.warn(
            f"a profiler ({previous!r}) holds Python's profile hook, so data()'s local variables cannot be read; "
            "the model sees only data()'s return value", stacklevel=2,
        )
        return DataRun(data(*args, **kwargs), {})
    frames: list[types.FrameType] = []

    def on_event(frame: types.FrameType, event: str, arg: Any) -> None:
        if chained is not None:
            chained(frame, event, arg)
        if event == "call" and frame.f_code is code:  # the first call is the outermost, should data() recurse
            frames.append(frame)
            sys.setprofile(chained)

    if paused is not None:
        paused.disable()
    sys.setprofile(on_event)
    try:
        value = data(*args, **kwargs)
    finally:
        sys.setprofile(chained)
        if paused is not None:
            paused.enable()
    captured = dict(frames[0].f_locals) if frames else {}
    frames.clear()
    return DataRun(value, captured)


def _data_call_arguments(data_args: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if data_args is None:
        return (), {}
    if isinstance(data_args, Mapping):
        return (), dict(data_args)
    if isinstance(data_args, (str, bytes)) or not isinstance(data_args, Iterable):
        raise TypeError(f"data_args must be a tuple or list of arguments for data() (or a dict), got {data_args!r}")
    return tuple(data_args), {}


def model_arguments(model: Callable[..., Any], run: DataRun) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments the model is called with.

    As in :func:`hyperbrace.minimize`, ``data()``'s return value fills the model's parameters in order (a tuple
    spreads over them). Where it does not fit (``data()`` returns more or fewer values than the model takes, or
    nothing), each parameter is taken *by name* from ``data()``'s local variables, which is what Hyperas did.

    >>> def create_model(x_train, y_train): ...
    >>> model_arguments(create_model, DataRun(([1], [2]), {}))
    (([1], [2]), {})
    >>> model_arguments(create_model, DataRun(None, {"x_train": [1], "y_train": [2], "nb_classes": 3}))
    ((), {'x_train': [1], 'y_train': [2]})
    """
    signature = inspect.signature(model)
    if not signature.parameters:
        return (), {}
    value = run.value
    positional = value if isinstance(value, tuple) else () if value is None else (value,)
    try:
        signature.bind(*positional)
        return positional, {}
    except TypeError:
        pass
    by_name: dict[str, Any] = {}
    missing: list[str] = []
    for name, parameter in signature.parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if name in run.locals:
            by_name[name] = run.locals[name]
        elif parameter.default is parameter.empty:
            missing.append(name)
    if missing:
        returned = "nothing" if value is None else f"{len(positional)} value{'s' * (len(positional) != 1)}"
        raise TypeError(
            f"{model.__name__}{signature} cannot get its arguments from data(): data() returned {returned}, and "
            f"it has no local variable named {', '.join(missing)}. Return the model's arguments from data() in "
            f"order, e.g. `return x_train, y_train, x_test, y_test`"
        )
    return (), by_name


def with_data_globals(functions: Iterable[Callable[..., Any]], data_locals: Mapping[str, Any]) -> dict[str, Any]:
    """Copies of ``functions`` (Hyperas' ``functions=`` list) that also see ``data()``'s locals as globals.

    Returns name -> copy; each copy sees the others under their names, so helpers may call each other.

    >>> def helper():
    ...     return nb_classes * 2
    >>> with_data_globals([helper], {"nb_classes": 5})["helper"]()
    10
    """
    originals = [inspect.unwrap(f) for f in functions]
    copies: dict[str, Any] = {}
    namespaces = []
    for function in originals:
        if not isinstance(function, types.FunctionType):
            continue  # a class or a builtin resolves as it is; only Python functions have globals to extend
        namespace = {**function.__globals__, **data_locals}
        copy = types.FunctionType(
            function.__code__, namespace, function.__name__, function.__defaults__, function.__closure__
        )
        copy.__kwdefaults__ = function.__kwdefaults__
        copy.__qualname__ = function.__qualname__
        copy.__module__ = function.__module__
        copy.__doc__ = function.__doc__
        copy.__dict__.update(function.__dict__)
        copies[function.__name__] = copy
        namespaces.append(namespace)
    for namespace in namespaces:
        namespace.update(copies)
    return copies
