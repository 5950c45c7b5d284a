"""Tests for minigan.metrics: mode statistics, the Fréchet distance and image statistics,
each against values worked out by hand or an independent oracle."""

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minigan.classifier import FeatureClassifier
from minigan.data import GRID25, RING8, Mixture2D
from minigan.metrics import (
    frechet_distance,
    gaussian_stats,
    image_stats,
    mode_stats,
    nearest_modes,
)

# ---------------------------------------------------------------- mode_stats


def test_samples_on_every_ring_mode_cover_all_modes_with_zero_kl():
    stats = mode_stats(np.repeat(RING8.modes, 3, axis=0), RING8)
    assert stats["high_quality"] == 1.0
    assert stats["modes_covered"] == 8
    assert stats["mode_counts"] == [3] * 8
    assert abs(stats["reverse_kl"]) < 1e-12  # sum_k 1/8 log(1/8 * 8) = 0
    assert stats["num_modes"] == 8 and stats["num_samples"] == 24
    assert json.loads(json.dumps(stats)) == stats


def test_all_samples_at_one_mode_give_kl_log_k():
    stats = mode_stats(np.tile(RING8.modes[2], (10, 1)), RING8)
    assert stats["modes_covered"] == 1
    assert stats["high_quality"] == 1.0
    assert stats["mode_counts"] == [0, 0, 10, 0, 0, 0, 0, 0]
    assert stats["reverse_kl"] == pytest.approx(math.log(8), rel=1e-12)  # 1 * log(1 * 8)


def test_samples_far_from_every_mode_are_not_high_quality():
    stats = mode_stats(np.full((5, 2), 10.0), RING8)
    assert stats["high_quality"] == 0.0
    assert stats["modes_covered"] == 0
    assert stats["mode_counts"] == [0] * 8
    # all five are still nearest to one mode, (sqrt(.5), sqrt(.5)): q = (0, 1, 0, ...)
    assert stats["reverse_kl"] == pytest.approx(math.log(8), rel=1e-12)


def test_high_quality_boundary_is_three_standard_deviations():
    sigma = RING8.std
    direction = np.array([0.6, 0.8])  # a unit vector
    inside = RING8.modes[0] + 2.9 * sigma * direction    # 0.029 from mode 0
    outside = RING8.modes[2] + 3.1 * sigma * direction   # 0.031 from mode 2
    stats = mode_stats(np.array([inside, inside, inside, outside, outside]), RING8)
    assert stats["high_quality"] == pytest.approx(3 / 5)
    assert stats["modes_covered"] == 1
    assert stats["mode_counts"] == [3, 0, 0, 0, 0, 0, 0, 0]
    # nearest-mode histogram of all samples: q0 = 3/5, q2 = 2/5
    expected = 0.6 * math.log(0.6 * 8) + 0.4 * math.log(0.4 * 8)
    assert stats["reverse_kl"] == pytest.approx(expected, rel=1e-12)


def test_grid25_samples_match_the_chi_square_high_quality_share():
    n = 20000
    stats = mode_stats(GRID25.sample(n, np.random.default_rng(123)), GRID25)
    expected = 1 - math.exp(-4.5)  # P(chi2 with 2 dof <= 9) = 0.98889
    tolerance = 5 * math.sqrt(expected * (1 - expected) / n)
    assert abs(stats["high_quality"] - expected) < tolerance
    assert stats["modes_covered"] == 25
    assert 0 <= stats["reverse_kl"] < 0.01  # about (K - 1) / (2 N) for a balanced sampler


@pytest.mark.parametrize("bad, message", [
    (np.array([[0.0, np.nan], [1.0, 0.0]]), "NaN"),
    (np.array([[np.inf, 0.0]]), "NaN or inf"),
    (np.zeros((4, 3)), r"shape \(N, 2\)"),
    (np.zeros(2), r"shape \(N, 2\)"),
    (np.zeros((0, 2)), "at least 1"),
])
def test_mode_stats_rejects_bad_samples(bad, message):
    with pytest.raises(ValueError, match=message):
        mode_stats(bad, RING8)


@given(st.integers(1, 40), st.integers(1, 6), st.integers(1, 7), st.integers(0, 2**32 - 1))
def test_nearest_modes_matches_a_loop_for_any_chunk_size(n, k, chunk_size, seed):
    rng = np.random.default_rng(seed)
    points, modes = rng.normal(size=(n, 2)), rng.normal(size=(k, 2))
    index, distance = nearest_modes(points, modes, chunk_size=chunk_size)
    for i, point in enumerate(points):
        distances = [math.dist(point, mode) for mode in modes]
        assert index[i] == int(np.argmin(distances))
        assert distance[i] == pytest.approx(min(distances), rel=1e-12, abs=1e-15)


@given(st.integers(1, 60), st.integers(1, 5), st.floats(0.05, 1.0), st.integers(0, 2**32 - 1))
def test_mode_stats_agree_with_a_direct_count(n, k, std, seed):
    rng = np.random.default_rng(seed)
    mixture = Mixture2D("random", rng.uniform(-5, 5, size=(k, 2)), std=std)
    samples = mixture.sample(n, rng) + rng.uniform(-0.3, 0.3, size=(n, 2))
    nearest = [int(np.argmin([math.dist(s, m) for m in mixture.modes])) for s in samples]
    good = [math.dist(s, mixture.modes[j]) <= 3 * std for s, j in zip(samples, nearest)]
    counts = [sum(g for g, j in zip(good, nearest) if j == mode) for mode in range(k)]
    q = [nearest.count(mode) / n for mode in range(k)]
    stats = mode_stats(samples, mixture)
    assert stats["mode_counts"] == counts
    assert stats["modes_covered"] == sum(c > 0 for c in counts)
    assert stats["high_quality"] == pytest.approx(sum(good) / n)
    assert stats["reverse_kl"] == pytest.approx(sum(p * math.log(p * k) for p in q if p > 0), abs=1e-12)
    assert -1e-12 <= stats["reverse_kl"] <= math.log(k) + 1e-12


# ---------------------------------------------------------------- Fréchet distance


def random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_gaussian_stats_match_numpy_mean_and_cov():
    features = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    mean, cov = gaussian_stats(features)
    assert mean.dtype == np.float64 and cov.dtype == np.float64
    np.testing.assert_allclose(mean, features.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(features.astype(np.float64), rowvar=False), rtol=1e-12)
    mean1, cov1 = gaussian_stats(np.array([[1.0], [3.0]]))
    assert mean1.tolist() == [2.0] and cov1.tolist() == [[2.0]]  # ((-1)^2 + 1^2) / (2 - 1)


def test_gaussian_stats_need_two_finite_rows():
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(np.array([[0.0, 1.0], [np.nan, 2.0]]))


def test_frechet_distance_of_identical_stats_is_zero():
    rng = np.random.default_rng(1)
    mu, sigma = rng.normal(size=6), random_spd(rng, 6)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)
    low_rank = np.outer(mu, mu)  # PSD with five zero eigenvalues
    assert 0.0 <= frechet_distance(mu, low_rank, mu, low_rank) < 1e-9


@given(st.lists(st.tuples(st.floats(-5, 5), st.floats(-5, 5), st.floats(0, 3), st.floats(0, 3)),
                min_size=1, max_size=6))
def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form(dims):
    mu1, mu2, s1, s2 = (np.array(column) for column in zip(*dims))
    expected = sum((a - b) ** 2 + (c - d) ** 2 for a, b, c, d in dims)  # stds c, d per dimension
    result = frechet_distance(mu1, np.diag(s1**2), mu2, np.diag(s2**2))
    assert result == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_frechet_distance_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    for d in (1, 2, 5, 16):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = random_spd(rng, d), random_spd(rng, d)
        covmean = linalg.sqrtm(s1 @ s2).real
        expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


@given(st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_frechet_distance_is_symmetric_and_adds_the_mean_shift(d, seed):
    rng = np.random.default_rng(seed)
    mu1, mu2, shift = rng.normal(size=d), rng.normal(size=d), rng.normal(size=d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d)
    forward, backward = frechet_distance(mu1, s1, mu2, s2), frechet_distance(mu2, s2, mu1, s1)
    assert forward >= 0
    assert forward == pytest.approx(backward, rel=1e-9, abs=1e-10)
    assert frechet_distance(mu1, s1, mu1 + shift, s1) == pytest.approx(shift @ shift, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("mu2, sigma2", [(np.zeros(2), np.eye(3)), (np.zeros(3), np.eye(2)),
                                         (np.zeros((3, 1)), np.eye(3)), (np.zeros(3), np.ones((3, 2)))])
def test_frechet_distance_rejects_mismatched_shapes(mu2, sigma2):
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(3), mu2, sigma2)


# ---------------------------------------------------------------- image_stats


def test_real_images_score_the_floor_and_cover_every_class(patterns, trained):
    n = 300
    same = image_stats(patterns.x_train[:n], patterns, trained)
    assert same["frechet_distance"] == pytest.approx(same["frechet_floor"], rel=1e-9)
    assert same["class_frechet_distance"] == pytest.approx(same["class_frechet_floor"], rel=1e-9)
    assert same["classes_covered"] == 10 and same["num_samples"] == n
    assert sum(same["class_histogram"]) == n
    assert json.loads(json.dumps(same)) == same
    other = image_stats(patterns.x_train[n:2 * n], patterns, trained)
    assert other["frechet_distance"] < 3 * other["frechet_floor"]
    assert other["classifier_accuracy"] == pytest.approx(trained.accuracy(patterns.x_test, patterns.y_test))


def test_one_constant_image_covers_one_class_and_scores_far_worse(patterns, trained):
    stats = image_stats(np.tile(patterns.x_test[0], (300, 1)), patterns, trained)
    assert stats["classes_covered"] == 1
    assert sorted(stats["class_histogram"]) == [0] * 9 + [300]
    assert stats["class_entropy"] == 0.0
    assert stats["frechet_distance"] > 10 * stats["frechet_floor"]


def test_class_coverage_threshold_and_entropy(patterns, trained, pattern_images):
    rng = np.random.default_rng(8)
    labels = np.array([0] * 190 + [1] * 9 + [2] * 1)  # threshold: 0.1 * 200 / 10 = 2 samples
    stats = image_stats(pattern_images(rng, labels, noise=0.0), patterns, trained)
    assert stats["class_histogram"] == [190, 9, 1] + [0] * 7
    assert stats["classes_covered"] == 2
    expected = -sum(p * math.log(p) for p in (190 / 200, 9 / 200, 1 / 200))
    assert stats["class_entropy"] == pytest.approx(expected, rel=1e-12)
    balanced = image_stats(pattern_images(rng, np.repeat(np.arange(10), 20), noise=0.0), patterns, trained)
    assert balanced["class_entropy"] == pytest.approx(math.log(10), rel=1e-12)


def test_per_class_distances_are_zero_for_the_test_images_and_find_the_one_bad_class(patterns, trained,
                                                                                       pattern_images):
    stats = image_stats(patterns.x_test, patterns, trained)
    exact, floor = stats["class_frechet_distance"], stats["class_frechet_floor"]
    assert len(exact) == 10 and all(abs(distance) <= 1e-9 for distance in exact)
    assert len(floor) == 10 and all(distance > 1e-6 for distance in floor)  # other real images: above 0
    # real-looking samples of every class, except that class 3's carry heavy noise
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(10), 40)
    samples = pattern_images(rng, labels)
    samples[labels == 3] = pattern_images(rng, labels[labels == 3], noise=0.4)
    stats = image_stats(samples, patterns, trained)
    assert np.mean(trained.predict(samples)[labels == 3] == 3) > 0.5  # still mostly seen as class 3
    distances = stats["class_frechet_distance"]
    assert None not in distances
    assert distances[3] > 3 * max(distances[:3] + distances[4:])
    assert distances[3] > 3 * stats["class_frechet_floor"][3]


def test_per_class_distances_need_two_images_on_each_side(patterns, trained, pattern_images):
    labels = np.array([0] * 190 + [1] * 9 + [2] * 1)
    stats = image_stats(pattern_images(np.random.default_rng(8), labels, noise=0.0), patterns, trained)
    distances = stats["class_frechet_distance"]
    assert [distance is None for distance in distances] == [False, False] + [True] * 8
    assert all(distance >= 0 for distance in distances[:2])
    assert json.loads(json.dumps(stats)) == stats


def test_image_stats_rejects_bad_samples_and_mismatched_classifiers(patterns, trained):
    with pytest.raises(ValueError, match=r"shape \(N, 64\)"):
        image_stats(np.zeros((10, 784)), patterns, trained)
    nan_samples = patterns.x_test[:10].copy()
    nan_samples[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        image_stats(nan_samples, patterns, trained)
    with pytest.raises(ValueError, match="at least 2"):
        image_stats(patterns.x_test[:1], patterns, trained)
    with pytest.raises(ValueError, match="max_real must be at least 2"):
        image_stats(patterns.x_test, patterns, trained, max_real=1)
    with pytest.raises(ValueError, match="classifier expects"):
        image_stats(patterns.x_test, patterns, FeatureClassifier(64, num_classes=5, hidden=8, feature_dim=4))
