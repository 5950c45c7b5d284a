"""Quality metrics of a trained model: PacGAN's mode metrics on the 2-D mixtures, the
classifier Fréchet distance and class coverage on images, and for a VAE the test-set
ELBO and the importance-weighted estimate of log p(x)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import metrics
from ..classifier import FeatureClassifier
from ..vae import VAE
from .realdata import RealData, evaluation_noise


def evaluate(model: Any, data: RealData, n: int, seed: int = 0) -> dict[str, Any]:
    """Metrics of n samples drawn from the fixed evaluation noise of `seed`."""
    noise = evaluation_noise(model.latent_dim, n, seed)
    samples = data.to_data_space(model.backend.to_numpy(model.sample(n, noise)))  # (n, features)
    if data.mixture is not None:
        return metrics.mode_stats(samples, data.mixture)
    results = metrics.image_stats(samples, data.dataset, fitted_classifier(data.dataset, seed))
    if isinstance(model, VAE):
        results.update(likelihood_stats(model, data))
    return results


def fitted_classifier(dataset: Any, seed: int) -> FeatureClassifier:
    """The feature classifier of the image metrics for `seed`, trained on `dataset`'s training set."""
    classifier = FeatureClassifier(dataset.x_train.shape[1], dataset.num_classes, seed=seed)
    classifier.fit(dataset.x_train, dataset.y_train)
    return classifier


def likelihood_stats(vae: VAE, data: RealData, iwae_examples: int = 1000, k: int = 100) -> dict[str, Any]:
    """elbo: the mean test-set ELBO (nats per example, negative; one reconstruction sample);
    log_likelihood: the IWAE estimate of log p(x) with k samples on the first
    `iwae_examples` test images. Both from the backend's seeded generator."""
    x_test = data.to_model_space(data.dataset.x_test)
    elbo = np.concatenate([vae.elbo(x_test[start:start + 1000]) for start in range(0, len(x_test), 1000)])
    log_likelihood = vae.log_likelihood(x_test[:iwae_examples], k=k)
    return {"elbo": float(elbo.mean()), "log_likelihood": float(log_likelihood.mean()),
            "log_likelihood_k": k, "log_likelihood_examples": int(len(log_likelihood))}
