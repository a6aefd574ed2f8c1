"""``VotingModel``: several trained classifiers voting on each sample (what ``optim.best_ensemble`` returns).

Each model's ``predict`` must give class probabilities: shape ``(samples, classes)``, or ``(samples,)`` /
``(samples, 1)`` for a binary classifier's probability of class 1. ``predict`` returns the class labels.

* ``voting="hard"``: each model votes for its most probable class; the class with the most (weighted) votes wins,
  ties going to the lower label. (Hyperas' own version returned the largest label any model voted for.)
* ``voting="soft"``: the (weighted) mean of the probabilities decides.

>>> import numpy as np
>>> class Fixed:
...     def __init__(self, probabilities): self.probabilities = np.asarray(probabilities)
...     def predict(self, x, **kwargs): return self.probabilities
>>> models = [Fixed([[0.9, 0.1], [0.2, 0.8]]), Fixed([[0.6, 0.4], [0.4, 0.6]]), Fixed([[0.1, 0.9], [0.3, 0.7]])]
>>> VotingModel(models, voting="hard").predict(None).tolist()
[0, 1]
>>> VotingModel(models, voting="soft", weights=[1, 1, 4]).predict(None).tolist()
[1, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["VotingModel"]


class VotingModel:
    """A (weighted) majority vote of ``models``; see the module's description."""

    def __init__(
        self,
        models: Sequence[Any],
        voting: str = "hard",
        weights: Sequence[float] | None = None,
        nb_classes: int | None = None,
    ) -> None:
        self.models = list(models)
        if not self.models:
            raise ValueError("VotingModel needs at least one model (did every trial fail, or return no 'model'?)")
        if voting not in ("hard", "soft"):
            raise ValueError(f"voting must be 'hard' or 'soft', got {voting!r}")
        if weights is not None and len(weights) != len(self.models):
            raise ValueError(f"{len(weights)} weights given for {len(self.models)} models; give one weight per model")
        self.voting = voting
        self.weights = np.ones(len(self.models)) if weights is None else np.asarray(weights, dtype=float)
        if (self.weights < 0).any() or not self.weights.sum() > 0:
            raise ValueError(f"weights must be >= 0 and not all 0, got {list(self.weights)}")
        self.nb_classes = nb_classes

    @property
    def model_list(self) -> list[Any]:
        """The models (Hyperas' name for them)."""
        return self.models

    def predict_proba(self, x: Any, batch_size: int | None = None, verbose: Any = 0) -> np.ndarray:
        """Each model's class probabilities, stacked: shape ``(models, samples, classes)``."""
        return np.stack([self._probabilities(model, x, batch_size, verbose) for model in self.models])

    def predict(self, x: Any, batch_size: int | None = None, verbose: Any = 0) -> np.ndarray:
        """The ensemble's class label for each sample."""
        probabilities = self.predict_proba(x, batch_size, verbose)
        if self.voting == "soft":
            return np.argmax(np.tensordot(self.weights, probabilities, axes=1), axis=-1)
        classes = max(probabilities.shape[-1], self.nb_classes or 0)
        labels = np.argmax(probabilities, axis=-1)  # (models, samples)
        votes = np.zeros((labels.shape[1], classes))
        for weight, model_labels in zip(self.weights, labels):
            votes[np.arange(labels.shape[1]), model_labels] += weight
        return np.argmax(votes, axis=-1)  # argmax takes the first maximum: ties go to the lower label

    @staticmethod
    def _probabilities(model: Any, x: Any, batch_size: int | None, verbose: Any) -> np.ndarray:
        kwargs = {} if batch_size is None else {"batch_size": batch_size}
        try:
            predicted = model.predict(x, verbose=verbose, **kwargs)
        except TypeError:  # a predict() without Keras' keywords
            predicted = model.predict(x)
        predicted = np.asarray(predicted, dtype=float)
        if predicted.ndim == 2 and predicted.shape[1] == 1:
            predicted = predicted[:, 0]
        if predicted.ndim == 1:  # a binary classifier's probability of class 1
            predicted = np.stack([1 - predicted, predicted], axis=-1)
        return predicted
