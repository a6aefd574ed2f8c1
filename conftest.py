"""pytest configuration shared by the tests and the doctests in hyperbrace/."""

import os

# Keras 3 picks its backend when first imported; the PyTorch backend is the one installed (and the fastest on CPU).
os.environ.setdefault("KERAS_BACKEND", "torch")
