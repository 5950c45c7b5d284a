"""Quality metrics of a trained model: PacGAN's mode metrics on the 2-D mixtures, the
classifier Fréchet distance and class coverage on images."""
from __future__ import annotations

from typing import Any

from .. import metrics
from ..classifier import FeatureClassifier
from .realdata import RealData, evaluation_noise


def evaluate(model: Any, data: RealData, n: int, seed: int = 0) -> dict[str, Any]:
    """Metrics of n samples drawn from the fixed evaluation noise of `seed`."""
    noise = evaluation_noise(model.latent_dim, n, seed)
    samples = data.to_data_space(model.backend.to_numpy(model.sample(n, noise)))  # (n, features)
    if data.mixture is not None:
        return metrics.mode_stats(samples, data.mixture)
    dataset = data.dataset
    classifier = FeatureClassifier(dataset.x_train.shape[1], dataset.num_classes, seed=seed)
    classifier.fit(dataset.x_train, dataset.y_train)
    return metrics.image_stats(samples, dataset, classifier)
