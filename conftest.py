"""pytest configuration shared by the tests and the doctests in hyperbrace/."""

import os

# Keras 3 picks its backend when first imported; the PyTorch backend is the one installed (and the fastest on CPU).
os.environ.setdefault("KERAS_BACKEND", "torch")

# tests/helpers holds scripts the tests run in processes of their own, and modules they import when they run: not
# collected (with --doctest-modules, collecting them would import Keras, Lightning and TensorFlow into pytest).
collect_ignore_glob = ["tests/helpers/*.py"]
