"""`RealData`: the real batches of a training run, a pure function of (seed, batch index),
so that a resumed run sees exactly the batches an uninterrupted one would; and the way
back from the model's pixel range and layout to the data's, for metrics and pictures."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..data import MIXTURES, BatchIterator, load_dataset


class RealData:
    """Real batches for a run: fresh draws from a 2-D mixture, or shuffled image batches.

    Args:
        name, batch_size, seed, data_dir: the data set, rows per batch, the seed of the
            draws or of the epoch permutations, and the IDX directory for "idx".
        image_layout: images as channels-last (H, W, 1) examples instead of flat vectors.
        symmetric: pixels scaled from [0, 1] to [-1, 1] (for a tanh generator).

    Attributes:
        mixture: the 2-D mixture, or None for image data.
        dataset: the image data set, or None for a mixture.
        shape: one example's shape as the model sees it, e.g. (2,), (784,) or (28, 28, 1).
    """

    def __init__(self, name: str, batch_size: int, seed: int, data_dir: str | None = None,
                 image_layout: bool = False, symmetric: bool = False):
        self.name, self.batch_size, self.seed = name, batch_size, seed
        self.mixture = MIXTURES.get(name)
        if self.mixture is not None and (image_layout or symmetric):
            raise ValueError(f"{name} is a 2-D point set, not images: use an MLP preset")
        self.dataset = None if self.mixture else load_dataset(name, data_dir, seed)
        self.symmetric = symmetric
        if self.dataset is not None:
            self.iterator = BatchIterator(self.dataset.x_train, batch_size, seed)
            pixels = self.dataset.x_train.shape[1]
            self.shape = (*self.dataset.image_shape, 1) if image_layout else (pixels,)
        else:
            self.shape = (2,)

    @property
    def features(self) -> int:
        """Values per example."""
        return int(np.prod(self.shape))

    def batch(self, index: int) -> np.ndarray:
        """Real batch number `index` (batch_size, *shape), float32; depends only on (seed, index)."""
        if self.mixture is not None:
            return self.mixture.sample(self.batch_size, np.random.default_rng([self.seed, 1, index]),
                                       dtype=np.float32)
        return self.to_model_space(self.iterator.batch(index))  # from (batch_size, pixels) in [0, 1]

    def to_model_space(self, examples: np.ndarray) -> np.ndarray:
        """Flat examples (n, features) in the data set's range, as the model reads them:
        laid out as (n, *shape) and scaled to [-1, 1] when symmetric (float32)."""
        examples = np.asarray(examples, dtype=np.float32)
        if self.symmetric:
            examples = examples * np.float32(2) - np.float32(1)
        return examples.reshape(len(examples), *self.shape)

    def to_data_space(self, samples: Any) -> np.ndarray:
        """Model samples (n, *shape) as flat (n, features) float64 in the data set's own range."""
        return to_data_space(samples, self.symmetric)


def to_data_space(samples: Any, symmetric: bool) -> np.ndarray:
    """Host samples (n, *shape) as flat (n, features) float64, mapped from a tanh model's
    [-1, 1] back to [0, 1] pixels when `symmetric`."""
    samples = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    return (samples + 1) / 2 if symmetric else samples


def evaluation_noise(latent_dim: int, n: int, seed: int) -> np.ndarray:
    """A fixed noise batch (n, latent_dim) for pictures and metrics, independent of the
    training stream."""
    return np.random.default_rng([seed, 2]).standard_normal((n, latent_dim))


def real_data(config: Any, preset: Any) -> RealData:
    """The real data of a resolved run configuration (`RunConfig`) laid out for its preset."""
    return RealData(config.data, preset.batch_size, config.seed, config.data_dir,
                    image_layout=preset.architecture == "dcgan", symmetric=preset.data_range == "symmetric")
