"""Framework integrations: saving and loading models, clean-up between trials, pruning hooks.

The core never imports a deep-learning framework. An integration is used only when its framework is already
imported by the user's code (looked up in ``sys.modules``), so ``import hyperbrace`` stays light and works
without Keras or PyTorch installed.

Each integration module offers:

* ``FRAMEWORK``: the framework it serves (``"keras"``, ``"lightning"``, ``"torch"``); it is active when one of
  its modules (``_FRAMEWORKS``) is imported;
* ``SUFFIX``: the file suffix of a saved model;
* ``is_model(obj)``, ``save(obj, stem) -> Path``, ``load(path)``;
* ``before_trial(context)`` and ``after_trial(context)``: hooks around every trial (e.g. Keras' pruning callback
  and ``clear_session``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

# Lightning before PyTorch: a LightningModule is also a torch.nn.Module, and the more specific integration wins.
_MODULES = ("hyperbrace.integrations.keras", "hyperbrace.integrations.lightning", "hyperbrace.integrations.torch")
_FRAMEWORKS = {
    "hyperbrace.integrations.keras": ("keras",),
    "hyperbrace.integrations.lightning": ("lightning.pytorch", "pytorch_lightning"),
    "hyperbrace.integrations.torch": ("torch",),
}
# Known without importing the integration (which would import its framework).
_SUFFIXES = {".keras": "hyperbrace.integrations.keras", ".pt": "hyperbrace.integrations.torch"}


def active() -> list[ModuleType]:
    """The integrations whose framework the running program has imported."""
    return [importlib.import_module(m) for m in _MODULES if any(name in sys.modules for name in _FRAMEWORKS[m])]


def for_model(obj: Any) -> ModuleType:
    """The integration that saves ``obj``: Keras, PyTorch, or the pickle fallback."""
    for integration in active():
        if integration.is_model(obj):
            return integration
    from hyperbrace.integrations import pickled

    return pickled


def for_path(path: Path) -> ModuleType:
    """The integration that loads a model saved at ``path``, chosen by its suffix."""
    return importlib.import_module(_SUFFIXES.get(path.suffix, "hyperbrace.integrations.pickled"))
