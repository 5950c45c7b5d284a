"""`RealData`: the real batches of a training run, a pure function of (seed, batch index),
so that a resumed run sees exactly the batches an uninterrupted one would."""
from __future__ import annotations

import numpy as np

from ..data import MIXTURES, BatchIterator, load_dataset


class RealData:
    """Real batches for a run: fresh draws from a 2-D mixture, or shuffled image batches.

    Attributes:
        mixture: the 2-D mixture, or None for image data.
        dataset: the image data set, or None for a mixture.
        features: values per example (2 for the mixtures, pixels for images).
    """

    def __init__(self, name: str, batch_size: int, seed: int, data_dir: str | None = None):
        self.name, self.batch_size, self.seed = name, batch_size, seed
        self.mixture = MIXTURES.get(name)
        self.dataset = None if self.mixture else load_dataset(name, data_dir, seed)
        if self.dataset is not None:
            self.iterator = BatchIterator(self.dataset.x_train, batch_size, seed)
        self.features = 2 if self.mixture else self.dataset.x_train.shape[1]

    def batch(self, index: int) -> np.ndarray:
        """Real batch number `index` (batch_size, features), float32; depends only on (seed, index)."""
        if self.mixture is not None:
            return self.mixture.sample(self.batch_size, np.random.default_rng([self.seed, 1, index]),
                                       dtype=np.float32)
        return self.iterator.batch(index)


def evaluation_noise(latent_dim: int, n: int, seed: int) -> np.ndarray:
    """A fixed noise batch (n, latent_dim) for pictures and metrics, independent of the
    training stream."""
    return np.random.default_rng([seed, 2]).standard_normal((n, latent_dim))
