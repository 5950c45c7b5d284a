"""The gradient checker itself: it passes correct gradients, catches wrong ones, refuses
float32, restores what it perturbs, and prints a readable report."""
import numpy as np
import pytest

import minigan as mg
from minigan import gradcheck


class HalfGradientDense(mg.Dense):
    """A Dense layer whose weight gradient is deliberately half the true one."""

    def backward(self, dy, param_grads=True, input_grad=True):
        dx = super().backward(dy, param_grads=False, input_grad=input_grad)
        if param_grads:
            self.dW += 0.5 * (self.x.T @ dy)
            self.db += dy.sum(axis=0)
        return dx


class WrongSigmoid(mg.Sigmoid):
    """Sigmoid with the derivative y instead of y (1 - y)."""

    def backward(self, dy, param_grads=True, input_grad=True):
        return dy * self.y


def test_numerical_gradient_of_a_known_function():
    x = np.array([[0.3, -1.2], [2.0, 0.7]])
    numeric = gradcheck.numerical_gradient(lambda: np.sum(np.sin(x) * x), x)
    np.testing.assert_allclose(numeric, np.cos(x) * x + np.sin(x), rtol=1e-8)


def test_numerical_gradient_restores_the_array_exactly():
    x = np.random.default_rng(0).standard_normal((3, 4)) * 1e3
    before = x.copy()
    gradcheck.numerical_gradient(lambda: np.sum(x ** 3), x)
    assert np.array_equal(x, before)


@pytest.mark.parametrize("broken, wrong", [(HalfGradientDense(3, 4), {"2.W"}),
                                           (WrongSigmoid(), {"input", "0.W", "0.b"})])
def test_wrong_gradients_are_caught(broken, wrong):
    backend = mg.get_backend("numpy", "float64", seed=0)
    model = mg.Sequential([mg.Dense(5, 3), mg.Tanh(), broken], backend=backend)
    report = gradcheck.check_model(model, backend.standard_normal((4, 5)))
    assert not report.passed()
    assert report.max_error > 1e-2
    assert {c.name for c in report.comparisons if c.error > 1e-2} == wrong
    with pytest.raises(gradcheck.GradcheckError) as error:
        gradcheck.assert_gradients_close(report)
    assert "worst relative error" in str(error.value) and report.worst.name in str(error.value)


def test_correct_gradients_land_near_1e_9():
    backend = mg.get_backend("numpy", "float64", seed=0)
    model = mg.Sequential([mg.Dense(6, 8), mg.LeakyReLU(0.2), mg.Dense(8, 2)], backend=backend)
    report = gradcheck.check_model(model, backend.standard_normal((5, 6)))
    assert report.max_error < 1e-8
    assert {c.name for c in report.comparisons} == {"input", "0.W", "0.b", "2.W", "2.b"}


def test_a_layer_can_be_checked_directly():
    report = gradcheck.check_model(mg.Dense(3, 2), np.random.default_rng(0).standard_normal((4, 3)))
    assert report.passed() and {c.name for c in report.comparisons} == {"input", "0.W", "0.b"}


def test_float32_is_refused():
    backend = mg.get_backend("numpy", "float32")
    model = mg.Sequential([mg.Dense(3, 2)], backend=backend)
    with pytest.raises(TypeError, match="need float64"):
        gradcheck.check_model(model, backend.standard_normal((2, 3)))
    with pytest.raises(TypeError, match="dtype='float64'"):
        gradcheck.check_loss(mg.BCEWithLogits(), np.zeros((2, 1), np.float32), 1.0)


def test_report_is_readable():
    comparison = gradcheck.compare("0.W", np.array([[1.0, 2.0]]), np.array([[1.0, 2.5]]))
    assert comparison.error == pytest.approx(0.5 / 2.5)
    assert comparison.worst_index == (0, 1)
    text = str(gradcheck.GradcheckReport([comparison]))
    assert "0.W" in text and "2.00e-01" in text and "(0, 1)" in text


def test_zero_gradients_compare_as_equal():
    assert gradcheck.compare("b", np.zeros(3), np.zeros(3)).error == 0.0
