"""Losses: values against independent formulas, gradients against central differences,
stability at extreme logits, agreement with PyTorch. Every test runs on each available
backend; the Hypothesis tests take it as a parameter (`BACKENDS`), since Hypothesis
refuses function-scoped fixtures."""
import math
import warnings

import numpy as np
import pytest
from conftest import BACKENDS
from hypothesis import given
from hypothesis import strategies as st

import minigan as mg
from minigan.gradcheck import assert_gradients_close, check_loss


def bce_reference(x, t):
    """-t log s(x) - (1 - t) log(1 - s(x)) with Python floats (moderate x only)."""
    s = 1.0 / (1.0 + math.exp(-x))
    return -t * math.log(s) - (1 - t) * math.log(1 - s)


@pytest.mark.parametrize("backend_name", BACKENDS)
@given(batch=st.integers(1, 16), width=st.integers(1, 4), seed=st.integers(0, 2**16),
       scalar_target=st.booleans())
def test_bce_gradient(backend_name, batch, width, seed, scalar_target):
    """BCE's gradient matches central differences, for scalar and element-wise targets."""
    be = mg.get_backend(backend_name, "float64")
    rng = np.random.default_rng(seed)
    logits = be.asarray(rng.standard_normal((batch, width)) * 4)
    targets = 0.9 if scalar_target else be.asarray(rng.random((batch, width)))
    assert_gradients_close(check_loss(mg.BCEWithLogits(), logits, targets))


def test_bce_value_matches_definition(backend):
    """BCE on logits equals -t log s(x) - (1 - t) log(1 - s(x)) averaged, to 1e-14."""
    x = np.array([[-3.0], [-0.5], [0.0], [1.5], [4.0]])
    t = np.array([[0.0], [1.0], [0.3], [1.0], [0.0]])
    expected = np.mean([bce_reference(a, b) for a, b in zip(x.ravel(), t.ravel())])
    loss = mg.BCEWithLogits().forward(backend.asarray(x), backend.asarray(t))
    assert abs(float(loss) - expected) < 1e-14


def test_bce_is_stable_at_huge_logits(backend):
    """Logits of +-1e4 give the exact loss and gradient, with no overflow or warning."""
    x = backend.asarray([[-1e4], [1e4], [-1e4], [1e4]])
    t = backend.asarray([[0.0], [0.0], [1.0], [1.0]])
    loss = mg.BCEWithLogits()
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        value = float(loss.forward(x, t))
        grad = backend.to_numpy(loss.backward())
    # Right answers: 0 and 1e4 (wrong side), mean over 4 elements; gradient (sigmoid - t) / 4.
    assert value == pytest.approx((0 + 1e4 + 1e4 + 0) / 4, rel=1e-15)
    np.testing.assert_array_equal(grad.ravel(), [0.0, 0.25, -0.25, 0.0])


def test_bce_rejects_mismatched_targets(backend):
    """Targets of another shape than the logits are refused."""
    with pytest.raises(ValueError, match="do not match"):
        mg.BCEWithLogits().forward(backend.asarray(np.zeros((4, 1))), backend.asarray(np.zeros((4,))))


@pytest.mark.parametrize("backend_name", BACKENDS)
@given(batch=st.integers(1, 16), classes=st.integers(2, 10), seed=st.integers(0, 2**16))
def test_softmax_cross_entropy_gradient(backend_name, batch, classes, seed):
    """Softmax cross-entropy's gradient matches central differences."""
    be = mg.get_backend(backend_name, "float64")
    rng = np.random.default_rng(seed)
    logits = be.asarray(rng.standard_normal((batch, classes)) * 3)
    labels = be.xp.asarray(rng.integers(0, classes, batch))
    assert_gradients_close(check_loss(mg.SoftmaxCrossEntropy(), logits, labels))


def test_softmax_cross_entropy_value(backend):
    """The value is mean(logsumexp - label logit), exact even with logits of +-1000."""
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]])
    labels = np.array([2, 1])
    first = -math.log(math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3)))
    second = 1000.0  # log-sum-exp is 1000 (to double precision), the label's logit is 0
    loss = mg.SoftmaxCrossEntropy().forward(backend.asarray(logits), backend.xp.asarray(labels))
    assert float(loss) == pytest.approx((first + second) / 2, rel=1e-14)


def test_softmax_cross_entropy_rejects_bad_shapes(backend):
    """Labels that do not give one class per row are refused."""
    with pytest.raises(ValueError, match="logits"):
        mg.SoftmaxCrossEntropy().forward(backend.asarray(np.zeros((4, 3))), backend.xp.zeros(3, dtype=int))


def test_bce_matches_torch(backend):
    """Value and gradient equal torch.nn.BCEWithLogitsLoss's (1e-13 and 1e-12 relative)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((7, 3)) * 5, rng.random((7, 3))
    loss = mg.BCEWithLogits()
    value = float(loss.forward(backend.asarray(x), backend.asarray(t)))
    grad = backend.to_numpy(loss.backward())
    tx = torch.tensor(x, requires_grad=True)
    reference = torch.nn.BCEWithLogitsLoss()(tx, torch.tensor(t))
    reference.backward()
    assert value == pytest.approx(reference.item(), rel=1e-13)
    np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-12, atol=1e-17)
