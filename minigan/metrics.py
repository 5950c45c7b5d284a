"""Sample-quality metrics: mode coverage for 2-D mixtures and a classifier Fréchet distance.

This module owns how minigan scores a generator:

* `mode_stats`: PacGAN's measures (Lin et al. 2018) for the 2-D mixtures of
  `minigan.data` -- the share of high-quality samples (within 3 std of their nearest
  mode), the number of modes covered, and the reverse KL of the mode histogram to uniform;
* `gaussian_stats` and `frechet_distance`: the FID formula, computed in float64 with
  symmetric eigendecompositions only;
* `FeatureClassifier` (from `minigan.classifier`): the features for the Fréchet distance
  on image data;
* `image_stats`: Fréchet distance, its real-data floor and class coverage for image samples.

Everything runs on the host with NumPy; results are plain JSON-serialisable dicts.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .data import ImageDataset, Mixture2D

HIGH_QUALITY_STDS = 3.0      # a sample within 3 std of its nearest mode is high quality
COVERED_SHARE = 0.1          # a class is covered with >= 10% of a uniform generator's share


def finite_matrix(name: str, array: Any, columns: int | None = None, min_rows: int = 1,
                   dtype: Any = np.float64) -> np.ndarray:
    """`array` as a (N, D) matrix of `dtype`; ValueError when the shape or values are wrong."""
    array = np.asarray(array, dtype=dtype)
    if array.ndim != 2 or (columns is not None and array.shape[1] != columns):
        wanted = f"(N, {columns})" if columns is not None else "(N, D)"
        raise ValueError(f"{name} must have shape {wanted}, got {array.shape}")
    if len(array) < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {len(array)}")
    if not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array).all(axis=1)))
        raise ValueError(f"{name} contains NaN or inf in {bad} of {len(array)} rows "
                         "(a diverged generator?)")
    return array


# ---------------------------------------------------------------- 2-D mixtures


def nearest_modes(points: np.ndarray, modes: np.ndarray,
                  chunk_size: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Index of and Euclidean distance to the nearest mode of every point.

    Args:
        points: (N, 2) array; modes: (K, 2) array.
        chunk_size: rows handled at once, so memory stays O(chunk_size * K).

    Returns:
        (index, distance): int64 (N,) and float64 (N,).
    """
    points, modes = np.asarray(points, dtype=np.float64), np.asarray(modes, dtype=np.float64)
    index = np.empty(len(points), dtype=np.int64)
    squared = np.empty(len(points), dtype=np.float64)
    for start in range(0, len(points), chunk_size):
        chunk = points[start:start + chunk_size]
        difference = chunk[:, None, :] - modes[None, :, :]  # (n, K, 2)
        distances = np.einsum("nkd,nkd->nk", difference, difference)  # (n, K) squared
        nearest = distances.argmin(axis=1)  # (n,)
        index[start:start + len(chunk)] = nearest
        squared[start:start + len(chunk)] = distances[np.arange(len(chunk)), nearest]
    return index, np.sqrt(squared)


def mode_stats(samples: np.ndarray, mixture: Mixture2D) -> dict[str, Any]:
    """PacGAN's quality measures for samples of a 2-D Gaussian mixture.

    Args:
        samples: (N, 2) finite array, N >= 1.
        mixture: the target mixture (its `modes` (K, 2) and `std`).

    Returns:
        high_quality: share of samples within 3 * std of their nearest mode;
        modes_covered: modes nearest to at least one high-quality sample;
        reverse_kl: KL(q || uniform) of q, the nearest-mode histogram of all samples
            (0 when balanced, log K when all samples share one mode);
        num_modes, num_samples, and mode_counts: high-quality samples per mode.
    """
    samples = finite_matrix("samples", samples, columns=2)
    num_modes, num_samples = len(mixture.modes), len(samples)
    index, distance = nearest_modes(samples, mixture.modes)
    high_quality = distance <= HIGH_QUALITY_STDS * mixture.std  # (N,)
    mode_counts = np.bincount(index[high_quality], minlength=num_modes)  # (K,)
    q = np.bincount(index, minlength=num_modes) / num_samples  # (K,)
    occupied = q[q > 0]  # 0 log 0 = 0
    return {
        "high_quality": float(high_quality.mean()),
        "modes_covered": int(np.count_nonzero(mode_counts)),
        "reverse_kl": float(np.sum(occupied * np.log(occupied * num_modes))),
        "num_modes": num_modes,
        "num_samples": num_samples,
        "mode_counts": [int(count) for count in mode_counts],
    }


# ---------------------------------------------------------------- Fréchet distance


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) with ddof=1 of (N, D) features, N >= 2, in float64."""
    features = finite_matrix("features", features, min_rows=2)
    mean = features.mean(axis=0)  # (D,)
    centred = features - mean  # (N, D)
    return mean, centred.T @ centred / (len(features) - 1)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix; tiny negative eigenvalues become 0."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    d = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrt(S1 S2)), where S1 S2 is similar to
    A S2 A with A = sqrt(S1), a symmetric PSD matrix whose eigenvalues are all real.

    Returns:
        The distance as a float, clamped at 0.
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"means must both have shape (D,), got {mu1.shape} and {mu2.shape}")
    dims = (len(mu1), len(mu1))
    if sigma1.shape != dims or sigma2.shape != dims:
        raise ValueError(f"covariances must both have shape {dims}, got {sigma1.shape} and {sigma2.shape}")
    root1 = _psd_sqrt((sigma1 + sigma1.T) / 2)  # (D, D)
    middle = root1 @ sigma2 @ root1  # (D, D)
    middle = (middle + middle.T) / 2
    trace_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0, None)))
    difference = mu1 - mu2
    distance = difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt
    return max(float(distance), 0.0)


# ---------------------------------------------------------------- image samples


def image_stats(samples: np.ndarray, dataset: ImageDataset, classifier: Any,
                max_real: int = 10000) -> dict[str, Any]:
    """Fréchet distance and class coverage of image samples, in the classifier's feature space.

    Args:
        samples: (N, D) finite generated images, N >= 2, D the data set's pixel count.
        dataset: supplies the real test images and the train images for the floor.
        classifier: a trained `minigan.classifier.FeatureClassifier` for this data set (it
            imports this module, so it is not imported here).
        max_real: at most this many real images per split are used.

    Returns:
        frechet_distance: real test images vs samples;
        frechet_floor: real test images vs min(N, max_real) real train images, about
            what a perfect generator with N samples would score;
        classes_covered: classes predicted for >= 10% of a uniform generator's share;
        class_histogram, class_entropy (nats; log C is uniform),
        class_frechet_distance: per class c, the distance between the real test images and
            the samples that the classifier assigns to c (None where either has fewer
            than two), which shows which classes a generator gets wrong;
        class_frechet_floor: the same for the real train images of the floor;
        classifier_accuracy on the real test images used, num_samples.
    """
    if max_real < 2:
        raise ValueError(f"max_real must be at least 2 (a covariance needs two rows), got {max_real}")
    pixels = dataset.x_train.shape[1]
    samples = finite_matrix("samples", samples, columns=pixels, min_rows=2)
    if (classifier.in_features, classifier.num_classes) != (pixels, dataset.num_classes):
        raise ValueError(f"classifier expects {classifier.in_features} pixels and "
                         f"{classifier.num_classes} classes; {dataset.name} has {pixels} "
                         f"and {dataset.num_classes}")
    x_test, y_test = dataset.x_test[:max_real], dataset.y_test[:max_real]
    x_train = dataset.x_train[:min(len(samples), max_real)]
    real_features, sample_features, floor_features = (classifier.features(x) for x in (x_test, samples, x_train))
    real_stats, sample_stats, floor_stats = (gaussian_stats(features) for features in
                                             (real_features, sample_features, floor_features))
    real_classes, sample_classes, floor_classes = (classifier.predict(x) for x in (x_test, samples, x_train))
    num_samples, num_classes = len(samples), dataset.num_classes
    histogram = np.bincount(sample_classes, minlength=num_classes)  # (C,)
    shares = histogram[histogram > 0] / num_samples
    return {
        "frechet_distance": frechet_distance(*real_stats, *sample_stats),
        "frechet_floor": frechet_distance(*real_stats, *floor_stats),
        "classes_covered": int(np.count_nonzero(histogram >= COVERED_SHARE * num_samples / num_classes)),
        "class_histogram": [int(count) for count in histogram],
        "class_entropy": float(np.sum(shares * np.log(1 / shares))),
        "class_frechet_distance": class_frechet_distances(real_features, real_classes, sample_features,
                                                          sample_classes, num_classes),
        "class_frechet_floor": class_frechet_distances(real_features, real_classes, floor_features,
                                                       floor_classes, num_classes),
        "classifier_accuracy": float(np.mean(real_classes == y_test)),  # classifier.accuracy, predicted once
        "num_samples": num_samples,
    }


def class_frechet_distances(real_features: np.ndarray, real_classes: np.ndarray, sample_features: np.ndarray,
                            sample_classes: np.ndarray, num_classes: int) -> list[float | None]:
    """Per class c, the Fréchet distance between the real features (N, D) and the sample
    features (M, D) whose classes (N,) / (M,) are c; None where either has fewer than two."""
    distances: list[float | None] = []
    for label in range(num_classes):
        real, fake = real_features[real_classes == label], sample_features[sample_classes == label]
        distances.append(frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))
                         if min(len(real), len(fake)) >= 2 else None)
    return distances
