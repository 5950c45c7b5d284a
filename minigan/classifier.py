"""`FeatureClassifier`: a small MLP, trained with minigan's own layers, whose penultimate
activations are the features of the classifier Fréchet distance in `minigan.metrics`.
It saves and loads as one `.npz` file (atomically; loading runs no code).
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

import numpy as np

from .backend import get_backend
from .checkpoint import atomic_savez, read_npz
from .layers import Dense, ReLU
from .losses import SoftmaxCrossEntropy
from .metrics import finite_matrix
from .model import Sequential
from .optim import Adam

CLASSIFIER_FORMAT = 1


class FeatureClassifier:
    """An MLP classifier whose penultimate layer supplies the features for the Fréchet distance.

    Architecture: Dense(in, hidden), ReLU, Dense(hidden, feature_dim), ReLU,
    Dense(feature_dim, num_classes), on a float32 NumPy backend seeded with `seed`.
    """

    batch_size = 2048  # rows per forward pass in `logits` and `features`

    def __init__(self, in_features: int, num_classes: int = 10, hidden: int = 256,
                 feature_dim: int = 64, seed: int = 0):
        self.in_features, self.num_classes = in_features, num_classes
        self.hidden, self.feature_dim, self.seed = hidden, feature_dim, seed
        self.backend = get_backend("numpy", dtype="float32", seed=seed)
        self.model = Sequential([Dense(in_features, hidden), ReLU(), Dense(hidden, feature_dim),
                                 ReLU(), Dense(feature_dim, num_classes)], backend=self.backend)

    def config(self) -> dict[str, int]:
        """The constructor arguments that rebuild this classifier."""
        return {"in_features": self.in_features, "num_classes": self.num_classes,
                "hidden": self.hidden, "feature_dim": self.feature_dim, "seed": self.seed}

    def _inputs(self, x: Any) -> np.ndarray:
        return finite_matrix("x", x, columns=self.in_features, dtype=self.backend.dtype)

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int = 5, batch_size: int = 128,
            lr: float = 1e-3, progress: Callable[[int, float], None] | None = None) -> list[float]:
        """Trains with Adam on softmax cross-entropy, reshuffling every epoch.

        Args:
            x: (N, in_features) inputs; y: (N,) integer labels in [0, num_classes).
            progress: called as progress(epoch, mean_loss) after every epoch.

        Returns:
            The mean training loss of every epoch.
        """
        x = self._inputs(x)
        y = np.asarray(y)
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"y must be ({len(x)},) integer labels, got {y.dtype} {y.shape}")
        if y.min() < 0 or y.max() >= self.num_classes:
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {y.min()}..{y.max()}")
        if epochs < 1 or batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
        loss, optimizer, history = SoftmaxCrossEntropy(), Adam(self.model, lr=lr), []
        for epoch in range(epochs):
            order, total = self.backend.rng.permutation(len(x)), 0.0
            for start in range(0, len(x), batch_size):
                batch = order[start:start + batch_size]
                self.model.zero_grad()
                value = loss.forward(self.model.forward(x[batch]), y[batch])
                self.model.backward(loss.backward())
                optimizer.step()
                total += float(value) * len(batch)
            history.append(total / len(x))
            if progress is not None:
                progress(epoch, history[-1])
        return history

    def _run(self, x: Any, layers: list) -> np.ndarray:
        """Runs `layers` on `x` in batches of `batch_size` rows."""
        x, outputs = self._inputs(x), []
        for start in range(0, len(x), self.batch_size):
            out = x[start:start + self.batch_size]
            for layer in layers:
                out = layer.forward(out)
            outputs.append(out)
        return np.concatenate(outputs)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, num_classes) logits of (N, in_features) inputs."""
        return self._run(x, self.model.layers)

    def features(self, x: np.ndarray) -> np.ndarray:
        """(N, feature_dim) penultimate ReLU activations."""
        return self._run(x, self.model.layers[:-1])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N,) predicted class ids."""
        return self.logits(x).argmax(axis=1)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        """Share of rows of `x` whose predicted class equals `y`."""
        return float(np.mean(self.predict(x) == np.asarray(y)))

    def state_dict(self) -> dict[str, np.ndarray]:
        """The model's parameters, keyed like `Sequential.state_dict`."""
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copies parameters from `state` (ValueError on missing names or wrong shapes)."""
        self.model.load_state_dict(state)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the configuration and parameters to one .npz file, atomically."""
        config = {"format": CLASSIFIER_FORMAT, "kind": "FeatureClassifier", **self.config()}
        arrays = {f"model/{name}": value for name, value in self.state_dict().items()}
        atomic_savez(path, {"config": np.array(json.dumps(config)), **arrays})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureClassifier":
        """Rebuilds a classifier written by `save`.

        Raises:
            FileNotFoundError: no file at `path`.
            ValueError: the file is corrupt or not a saved FeatureClassifier.
        """
        arrays = read_npz(path, what="feature classifier")
        try:
            config = json.loads(str(arrays["config"]))
            if config.pop("kind") != "FeatureClassifier" or config.pop("format") != CLASSIFIER_FORMAT:
                raise ValueError("unknown kind or format")
            classifier = cls(**config)
            classifier.load_state_dict({name[len("model/"):]: value for name, value in arrays.items()
                                        if name.startswith("model/")})
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path} is not a valid saved FeatureClassifier ({error})") from None
        return classifier
