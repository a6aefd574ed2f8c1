"""Any other model (scikit-learn, plain Python objects): saved with cloudpickle, so classes defined in a script
or a notebook load again in another process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cloudpickle

FRAMEWORK = None
SUFFIX = ".pkl"


def is_model(obj: Any) -> bool:
    return True


def save(obj: Any, stem: Path) -> Path:
    path = stem.with_suffix(SUFFIX)
    with open(path, "wb") as f:
        cloudpickle.dump(obj, f)
    return path


def load(path: Path, **kwargs: Any) -> Any:
    with open(path, "rb") as f:
        return cloudpickle.load(f)
