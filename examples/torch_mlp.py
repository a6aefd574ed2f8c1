"""A PyTorch model tuned with hyperbrace: an MLP on scikit-learn's digits (8x8 images of 0-9).

The templates mark three hyperparameters right where they are used:

* ``hidden={{choice([32, 64, 128])}}``              -> parameter ``hidden``
* ``lr={{loguniform(1e-4, 1e-1)}}``                 -> parameter ``lr``
* ``optimizer_class = {{choice([torch.optim.Adam, torch.optim.SGD])}}`` -> parameter ``optimizer_class``
  (a choice of objects: the trial table shows their source text)

Run it::

    python examples/torch_mlp.py                   # 20 trials, about a minute on a laptop CPU
    python examples/torch_mlp.py --max-evals 40    # continue the same study up to 40 trials

The best model is saved whole with ``torch.save`` in ``hyperbrace-runs/torch_mlp.create_model/models/`` and comes
back, ready to predict, as ``best_model``.
"""

from __future__ import annotations

import argparse
import sys

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from hyperbrace import STATUS_OK, choice, loguniform, minimize  # noqa: F401  (choice/loguniform: the templates)

EPOCHS = 30  # full-batch epochs: the data set is small (1,797 images)


def data():
    """Digits as float tensors scaled to [0, 1]: ``x_train, y_train, x_val, y_val`` (25% held out, fixed seed)."""
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return x_train, y_train, x_val, y_val


class MLP(nn.Module):
    """64 pixels -> ``hidden`` ReLU units -> 10 classes."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def create_model(x_train, y_train, x_val, y_val):
    torch.manual_seed(0)  # the same initial weights in every trial: only the hyperparameters differ
    model = MLP(hidden={{choice([32, 64, 128])}})  # template -> "hidden"
    optimizer_class = {{choice([torch.optim.Adam, torch.optim.SGD])}}  # template -> "optimizer_class"
    optimizer = optimizer_class(model.parameters(), lr={{loguniform(1e-4, 1e-1)}})  # template -> "lr"
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(EPOCHS):
        model.train()
        optimizer.zero_grad()
        loss_fn(model(x_train), y_train).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        val_loss = loss_fn(model(x_val), y_val).item()
        accuracy = (model(x_val).argmax(dim=1) == y_val).float().mean().item()
    # The loss is minimized; the accuracy is kept with the trial as an extra (result.trials[i].extras).
    return {"loss": val_loss, "status": STATUS_OK, "model": model, "accuracy": accuracy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tune a PyTorch MLP on scikit-learn's digits with hyperbrace.")
    parser.add_argument("--max-evals", type=int, default=20, help="total number of trials of the study")
    parser.add_argument("--seed", type=int, default=0, help="seed of the search's suggestions")
    parser.add_argument("--runs", default="hyperbrace-runs", help="where run directories are kept")
    args = parser.parse_args(argv)

    best_run, best_model = minimize(create_model, data, max_evals=args.max_evals, seed=args.seed, directory=args.runs)
    print("\nbest_run =", best_run)
    _, _, x_val, y_val = data()
    with torch.no_grad():
        accuracy = (best_model(x_val).argmax(dim=1) == y_val).float().mean().item()
    print(f"Best model, reloaded from disk: validation accuracy {accuracy:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
