"""Tests for minigan.classifier: the feature classifier learns, is deterministic, reports
its loss, refuses bad input, and saves and loads exactly (never executing code)."""

import numpy as np
import pytest

from minigan.classifier import FeatureClassifier


def test_classifier_learns_the_patterns_and_exposes_penultimate_features(patterns, trained):
    assert trained.accuracy(patterns.x_test, patterns.y_test) > 0.95
    features = trained.features(patterns.x_test)
    assert features.shape == (300, 16) and (features >= 0).all()  # after a ReLU
    logits = trained.logits(patterns.x_test)
    assert logits.shape == (300, 10)
    np.testing.assert_allclose(features @ trained.model.layers[-1].W + trained.model.layers[-1].b,
                               logits, rtol=1e-5, atol=1e-5)
    predictions = trained.predict(patterns.x_test)
    assert predictions.shape == (300,) and np.issubdtype(predictions.dtype, np.integer)


def test_classifier_batches_do_not_change_the_result(patterns, trained, monkeypatch):
    whole = trained.logits(patterns.x_test)
    monkeypatch.setattr(trained, "batch_size", 7)
    np.testing.assert_allclose(trained.logits(patterns.x_test), whole, rtol=1e-5, atol=1e-5)  # float32 BLAS


def test_classifier_reaches_90_percent_on_sklearn_digits():
    pytest.importorskip("sklearn")
    from minigan.data import digits
    data = digits()
    classifier = FeatureClassifier(64, seed=0)
    losses = classifier.fit(data.x_train, data.y_train, epochs=5)
    assert len(losses) == 5 and losses[-1] < losses[0]
    assert classifier.accuracy(data.x_test, data.y_test) > 0.9


def test_training_is_deterministic_for_a_seed_and_reports_progress(patterns):
    runs, seen = [], []
    for seed, progress in ((3, lambda epoch, loss: seen.append((epoch, loss))), (3, None), (4, None)):
        classifier = FeatureClassifier(64, hidden=32, feature_dim=8, seed=seed)
        runs.append((classifier.fit(patterns.x_train, patterns.y_train, epochs=2, progress=progress),
                     classifier.model.params.copy()))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][1], runs[2][1])
    assert seen == [(0, runs[0][0][0]), (1, runs[0][0][1])]


def test_fit_reports_the_mean_loss_over_every_sample(patterns):
    classifier = FeatureClassifier(64, hidden=16, feature_dim=8, seed=1)
    x, y = patterns.x_train[:50], patterns.y_train[:50]
    logits = classifier.logits(x).astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected = -log_probs[np.arange(50), y].mean()
    (loss,) = classifier.fit(x, y, epochs=1, batch_size=16, lr=1e-12)  # batches of 16, 16, 16, 2
    assert loss == pytest.approx(expected, rel=1e-5)


def test_fit_rejects_bad_inputs(patterns):
    classifier = FeatureClassifier(64, hidden=8, feature_dim=4)
    with pytest.raises(ValueError, match=r"shape \(N, 64\)"):
        classifier.fit(np.zeros((5, 63)), np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        classifier.fit(patterns.x_train[:5], np.array([0, 1, 2, 3, 10]))
    with pytest.raises(ValueError, match="integer labels"):
        classifier.fit(patterns.x_train[:5], np.zeros(4, dtype=int))


def test_save_and_load_round_trip_gives_identical_logits(tmp_path, patterns, trained):
    path = tmp_path / "classifier.npz"
    trained.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["classifier.npz"]  # no temporary left over
    loaded = FeatureClassifier.load(path)
    assert loaded.config() == trained.config()
    np.testing.assert_array_equal(loaded.logits(patterns.x_test), trained.logits(patterns.x_test))
    for name, value in trained.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value)


def test_load_reports_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        FeatureClassifier.load(tmp_path / "absent.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00not a zip archive" * 10)
    with pytest.raises(ValueError, match="garbage.npz"):
        FeatureClassifier.load(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    with pytest.raises(ValueError, match="foreign.npz.*not a valid saved FeatureClassifier"):
        FeatureClassifier.load(foreign)
