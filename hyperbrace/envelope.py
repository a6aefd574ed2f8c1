"""A search's plan as it travels to a worker on another process or machine: the plan, and what it needs around it.

A worker that unpickles a plan imports the model's modules, and those may depend on the environment the chief ran
in: ``KERAS_BACKEND`` picks the framework Keras imports, ``TF_*``/``JAX_*``/``XLA_*`` settings change what loads.
A variable a script sets in ``os.environ`` before importing Keras never reaches a worker started elsewhere (a
``hyperbrace worker`` on another machine, a Ray or Dask worker), so the envelope carries them: :func:`seal` records
the chief's framework-selecting variables, its import path and the packages behind the modules it has imported, and
:func:`unseal` applies the variables *before* unpickling. When unpickling fails on a missing module, the worker says
in two lines which module, which package (and version) the chief had, and which variable may be missing, instead
of a traceback through pickle.

>>> from hyperbrace.envelope import seal, unseal
>>> blob = seal({"max_evals": 3}, environment={"KERAS_BACKEND": "torch"})
>>> unseal(blob, apply_environment=False)
{'max_evals': 3}
"""

from __future__ import annotations

import os
import pickle
import sys
import warnings
from collections.abc import Mapping
from typing import Any

__all__ = ["seal", "unseal", "framework_environment", "PlanImportError", "FRAMEWORK_VARIABLES", "FRAMEWORK_PREFIXES"]

#: Variables that decide which framework (or backend) a model's imports load.
FRAMEWORK_VARIABLES = ("KERAS_BACKEND", "KERAS_HOME", "TF_USE_LEGACY_KERAS", "PYTORCH_ENABLE_MPS_FALLBACK")
#: Prefixes of framework settings carried as the chief had them (``CUDA_VISIBLE_DEVICES`` is not: the worker's
#: engine or ``gpus=`` gives each worker its own GPUs).
FRAMEWORK_PREFIXES = ("KERAS_", "TF_", "JAX_", "XLA_", "TORCH_", "PYTORCH_", "HYPERBRACE_")
_NOT_CARRIED = {"TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"}  # thread caps are the worker's own

_VERSION = 1


class PlanImportError(ImportError):
    """A worker could not load the plan: a module the model needs is missing here. ``str()`` is two lines."""


def framework_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The chief's variables that select or configure a deep-learning framework (see the module's docstring).

    >>> framework_environment({"KERAS_BACKEND": "jax", "HOME": "/root", "XLA_FLAGS": "--xla_cpu"})
    {'KERAS_BACKEND': 'jax', 'XLA_FLAGS': '--xla_cpu'}
    """
    environ = os.environ if environ is None else environ
    return {
        name: value for name, value in sorted(environ.items())
        if (name in FRAMEWORK_VARIABLES or name.startswith(FRAMEWORK_PREFIXES)) and name not in _NOT_CARRIED
    }


#: Import names whose package is named otherwise (the usual suspects; others are named as imported).
_PACKAGE_NAMES = {"sklearn": "scikit-learn", "skimage": "scikit-image", "cv2": "opencv-python", "PIL": "Pillow",
                  "yaml": "PyYAML", "tf_keras": "tf-keras", "google": "protobuf", "bs4": "beautifulsoup4"}


def _imported_packages() -> dict[str, str]:
    """``{top-level module: "package==version"}`` for the non-standard modules this process has imported.

    Read from the modules themselves (``__version__``), not from the installed distributions' metadata, which
    takes seconds to scan on a large environment.
    """
    found: dict[str, str] = {}
    for name, module in list(sys.modules.items()):
        if "." in name or name.startswith("_") or name in sys.stdlib_module_names or module is None:
            continue
        if name in sys.builtin_module_names or not getattr(module, "__file__", None):
            continue
        with warnings.catch_warnings():  # some packages deprecate __version__ (MarkupSafe)
            warnings.simplefilter("ignore")
            version = getattr(module, "__version__", None)
        package = _PACKAGE_NAMES.get(name, name)
        found[name] = f"{package}=={version}" if isinstance(version, str) else package
    return found


def seal(plan: Any, environment: Mapping[str, str] | None = None, extra_environment: Mapping[str, str] = ()) -> bytes:
    """The plan, pickled with cloudpickle, in an envelope with the chief's framework variables, import path and
    imported packages. ``environment`` defaults to :func:`framework_environment`; ``extra_environment`` is added
    (e.g. thread caps chosen for the workers)."""
    import cloudpickle

    env = dict(framework_environment() if environment is None else environment)
    env.update(extra_environment)
    return pickle.dumps({
        "version": _VERSION,
        "environment": env,
        "path": [os.path.abspath(p) if p else os.getcwd() for p in sys.path],
        "packages": _imported_packages(),
        "plan": cloudpickle.dumps(plan),
    })


def unseal(blob: bytes, apply_environment: bool = True) -> Any:
    """The plan in ``blob``, after applying the chief's framework variables here (they must be set before the
    model's modules import a framework). Raises :class:`PlanImportError` (two lines) when a module is missing."""
    envelope = pickle.loads(blob)
    before = {name: os.environ.get(name, "<unset>") for name in FRAMEWORK_VARIABLES}
    if apply_environment:
        os.environ.update(envelope["environment"])
    # The chief's import path (where it exists here) first, so its own modules import as they did there.
    chief_path = [p for p in envelope["path"] if os.path.isdir(p) or os.path.isfile(p)]
    sys.path[:] = chief_path + [p for p in sys.path if p not in chief_path]
    import cloudpickle  # noqa: F401  (the plan was written by cloudpickle; plain pickle reads it with it)

    try:
        return pickle.loads(envelope["plan"])
    except ImportError as exc:
        raise PlanImportError(explain_import_error(exc, envelope, before)) from None


def explain_import_error(exc: ImportError, envelope: Mapping[str, Any], before: Mapping[str, str] = {}) -> str:
    """Two lines: the module that is missing and the package the chief had; the variables that may be missing.

    >>> envelope = {"packages": {"tensorflow": "tensorflow==2.20.0"}, "environment": {"KERAS_BACKEND": "tensorflow"}}
    >>> error = ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")
    >>> print(explain_import_error(error, envelope, before={"KERAS_BACKEND": "<unset>"}))  # doctest: +ELLIPSIS
    this worker cannot load the search: no module named 'tensorflow' here (the chief had tensorflow==2.20.0: pip...
    environment: the chief ran with KERAS_BACKEND=tensorflow (set here too; this machine had KERAS_BACKEND=<unset>)
    """
    module = getattr(exc, "name", None) or str(exc)
    top = module.partition(".")[0]
    package = envelope.get("packages", {}).get(top)
    install = (f"the chief had {package}: pip install {package}" if package
               else f"pip install the package that provides {top!r}")
    first = f"this worker cannot load the search: no module named {module!r} here ({install})"
    chief_env = envelope.get("environment", {})
    related = {k: v for k, v in chief_env.items() if k in FRAMEWORK_VARIABLES}
    if related:
        chief = ", ".join(f"{k}={v}" for k, v in related.items())
        here = ", ".join(f"{k}={before.get(k, os.environ.get(k, '<unset>'))}" for k in related)
        second = f"environment: the chief ran with {chief} (set here too; this machine had {here})"
    else:
        here = ", ".join(f"{k}={v}" for k, v in before.items() if v != "<unset>") or "none of them either"
        second = ("environment: the chief set no framework variable (KERAS_BACKEND, ...; this machine has "
                  f"{here}); if the model needs one, set it in os.environ before minimize() or on this worker")
    return f"{first}\n{second}"
