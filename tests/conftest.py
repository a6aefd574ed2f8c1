import os

# Keras 3 picks its backend at import; the PyTorch backend is the one installed (and the fastest on CPU here).
os.environ.setdefault("KERAS_BACKEND", "torch")
