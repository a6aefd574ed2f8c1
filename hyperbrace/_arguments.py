"""Checks of ``minimize()``'s and ``evaluate()``'s arguments, made before anything runs or is created.

Each error names the argument, what was given and what it takes, so that ``max_evals=True`` or ``gpus="abc"``
fail at the call instead of running one trial or running on the CPU.

>>> check_search_arguments(max_evals=True)
Traceback (most recent call last):
...
ValueError: max_evals=True: give the total number of trials, a positive integer such as 50 (not a bool)
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = ["check_search_arguments", "check_evaluate_arguments", "keyword_hints"]

_MISSING: Any = object()
MAX_SEED = 2**32 - 1  # NumPy's (so Optuna's samplers') seed range


def keyword_hints(*also: Callable[..., Any]) -> Callable[[_F], _F]:
    """Wrap a public function so that a misspelt keyword names the one meant: Python's own TypeError only says
    ``unexpected keyword argument 'max_eval'``. ``also``: functions whose keywords it passes on (``**options``).

    >>> @keyword_hints()
    ... def search(max_evals=50, timeout=None):
    ...     return max_evals
    >>> search(max_eval=3)
    Traceback (most recent call last):
    ...
    TypeError: search() got an unexpected keyword argument 'max_eval'; did you mean max_evals=...?
    """

    def decorate(function: _F) -> _F:
        names = [name for f in (function, *also) for name, parameter in inspect.signature(f).parameters.items()
                 if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)]
        known = frozenset(names)
        public = [name for name in dict.fromkeys(names) if not name.startswith("_")]

        @functools.wraps(function)
        def checked(*args: Any, **kwargs: Any) -> Any:
            for name in kwargs:
                if name not in known:
                    close = difflib.get_close_matches(name, public, n=1, cutoff=0.6)
                    hint = f"did you mean {close[0]}=...?" if close else f"it takes: {', '.join(public)}"
                    raise TypeError(f"{function.__name__}() got an unexpected keyword argument {name!r}; {hint}")
            return function(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _int_at_least(name: str, value: Any, low: int, what: str) -> None:
    if not _is_int(value) or value < low:
        kind = "" if "integer" in what else ", a positive integer" if low == 1 else f", an integer >= {low}"
        extra = " (not a bool)" if isinstance(value, bool) else ""
        raise ValueError(f"{name}={value!r}: give {what}{kind}{extra}")


def _flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r}: give True or False")


def _callable(name: str, value: Any, optional: bool) -> None:
    if value is None and optional:
        return
    if not callable(value):
        allowed = "a function (or None)" if optional else "a function"
        raise TypeError(f"{name}={value!r}: give {allowed}")


def _data_args(value: Any) -> None:
    if value is not None and not isinstance(value, (Sequence, Mapping)) or isinstance(value, (str, bytes)):
        raise TypeError(f"data_args={value!r}: give a tuple or list of positional arguments for data(), a dict of "
                        "keyword arguments, or None")


def check_gpus(gpus: Any) -> None:
    """``gpus=``: None, "all", a GPU id (an integer >= 0, or a "GPU-..."/"MIG-..." UUID), or a list of ids.

    >>> check_gpus([0, "1"]); check_gpus("all"); check_gpus("0,1")
    >>> check_gpus("abc")
    Traceback (most recent call last):
    ...
    ValueError: gpus='abc': 'abc' is not a GPU id; give "all", a GPU number such as 0, a list such as [0, 1], or "0,1"
    """
    if gpus is None or gpus == "all":
        return
    ids = gpus.split(",") if isinstance(gpus, str) else gpus if isinstance(gpus, Sequence) else [gpus]
    for gpu in ids:
        text = gpu.strip() if isinstance(gpu, str) else gpu
        valid = (_is_int(text) and text >= 0) or (
            isinstance(text, str) and (text.isdigit() or text.startswith(("GPU-", "MIG-")))
        )
        if not valid:
            raise ValueError(f"gpus={gpus!r}: {gpu!r} is not a GPU id; give \"all\", a GPU number such as 0, a list "
                             "such as [0, 1], or \"0,1\"")
    if not ids:
        raise ValueError(f"gpus={gpus!r}: the list is empty; leave gpus out to run on the CPU")


def check_search_arguments(
    *,
    model: Any = _MISSING,
    data: Any = None,
    max_evals: Any = 50,
    algo: Any = "tpe",
    seed: Any = None,
    storage: Any = None,
    study_name: Any = None,
    directory: Any = "hyperbrace-runs",
    timeout: Any = None,
    n_jobs: Any = 1,
    gpus: Any = None,
    prune: Any = "median",
    keep_models: Any = 3,
    show_progress: Any = True,
    verbose: Any = False,
    data_args: Any = None,
    retries: Any = 1,
    load_options: Any = None,
) -> None:
    """Raise a ValueError/TypeError naming the first of ``minimize()``'s arguments that is not valid."""
    import optuna

    from hyperbrace.samplers import PRUNERS, SAMPLERS
    from hyperbrace.storage import GRPC_SCHEME, check_storage_url

    if model is not _MISSING:
        _callable("model", model, optional=False)
    _callable("data", data, optional=True)
    _int_at_least("max_evals", max_evals, 1, "the total number of trials, a positive integer such as 50")
    if not isinstance(algo, optuna.samplers.BaseSampler) and algo not in SAMPLERS:
        raise ValueError(f"algo={algo!r} is not a known search algorithm; give one of "
                         f"{', '.join(map(repr, SAMPLERS))} or an Optuna sampler")
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= MAX_SEED):
        raise ValueError(f"seed={seed!r}: give an integer from 0 to {MAX_SEED}, or None for a random start")
    if storage is not None:
        if not isinstance(storage, (str, os.PathLike)):
            raise TypeError(f"storage={storage!r}: give a database URL such as 'sqlite:///study.db' or "
                            "'postgresql://user@host/db', or None for the run directory's journal file")
        text = os.fspath(storage)
        if "://" in text and not text.startswith(GRPC_SCHEME):  # a gRPC proxy is checked where it is opened
            check_storage_url(text)
    if study_name is not None and (not isinstance(study_name, str) or not study_name.strip()):
        raise ValueError(f"study_name={study_name!r}: give a non-empty string, or None for the default name")
    if not isinstance(directory, (str, os.PathLike)) or not os.fspath(directory):
        raise TypeError(f"directory={directory!r}: give a folder path (a str or pathlib.Path)")
    if timeout is not None and (
        not isinstance(timeout, numbers.Real) or isinstance(timeout, bool) or math.isnan(timeout) or timeout <= 0
    ):
        raise ValueError(f"timeout={timeout!r}: give a positive number of seconds, or None for no time limit")
    _int_at_least("n_jobs", n_jobs, 1, "the number of worker processes")
    check_gpus(gpus)
    if not isinstance(prune, optuna.pruners.BasePruner) and prune is not False and prune not in PRUNERS:
        raise ValueError(f"prune={prune!r} is not a known pruner; give one of {', '.join(map(repr, PRUNERS))} or an "
                         "Optuna pruner")
    _int_at_least("keep_models", keep_models, 0, "how many of the best models to keep")
    _flag("show_progress", show_progress)
    _flag("verbose", verbose)
    _data_args(data_args)
    _int_at_least("retries", retries, 0, "how often an interrupted trial runs again")
    if load_options is not None and not isinstance(load_options, Mapping):
        raise TypeError(f"load_options={load_options!r}: give a dict of keyword options for the model's loader")


def check_evaluate_arguments(model: Any, params: Any, data: Any, data_args: Any) -> None:
    """Raise naming the first of ``evaluate()``'s arguments that is not valid.

    >>> check_evaluate_arguments(print, [("x", 1)], None, None)
    Traceback (most recent call last):
    ...
    TypeError: params=[('x', 1)]: give a dict of template values, name -> value, such as result.best_params
    """
    _callable("model", model, optional=False)
    if not isinstance(params, Mapping):
        raise TypeError(f"params={params!r}: give a dict of template values, name -> value, such as "
                        "result.best_params")
    _callable("data", data, optional=True)
    _data_args(data_args)
