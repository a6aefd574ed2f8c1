"""Keras 3 (any backend): ``.keras`` model files, and ``clear_session()`` after every trial so that memory does
not grow over a long search."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import keras

FRAMEWORK = "keras"
SUFFIX = ".keras"


def is_model(obj: Any) -> bool:
    return isinstance(obj, keras.Model)


def save(obj: Any, stem: Path) -> Path:
    path = stem.with_suffix(SUFFIX)
    obj.save(path)
    return path


def load(path: Path, custom_objects: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    return keras.saving.load_model(path, custom_objects=custom_objects, **kwargs)


def before_trial(context: Any) -> None:
    pass


def after_trial(context: Any) -> None:
    # Each trial builds a new model; without this, Keras' global state (layer names, graphs) keeps growing.
    keras.backend.clear_session()
    gc.collect()
