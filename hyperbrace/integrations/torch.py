"""PyTorch: models are saved whole with ``torch.save`` (pickled with cloudpickle, so a ``nn.Module`` class defined
in a script or notebook loads again elsewhere), and loaded with ``torch.load(..., weights_only=False)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cloudpickle
import torch

FRAMEWORK = "torch"
SUFFIX = ".pt"


def is_model(obj: Any) -> bool:
    return isinstance(obj, torch.nn.Module)


def save(obj: Any, stem: Path) -> Path:
    path = stem.with_suffix(SUFFIX)
    torch.save(obj, path, pickle_module=cloudpickle)
    return path


def load(path: Path, map_location: Any = "cpu", **kwargs: Any) -> Any:
    # weights_only=False: the file holds a whole module that hyperbrace itself wrote, not an untrusted download.
    return torch.load(path, map_location=map_location, weights_only=False)


def before_trial(context: Any) -> None:
    pass


def after_trial(context: Any) -> None:
    pass
