"""The gradient checker itself: the element-wise criterion passes correct gradients and
catches wrong ones (one wrong small entry included), its round-off allowance scales with
the checked function, it refuses float32, restores what it perturbs, and reports readably."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigan as mg

from conftest import layer_stacks
from minigan import gradcheck



class HalfGradientDense(mg.Dense):
    """A Dense layer whose weight gradient is deliberately half the true one."""

    def backward(self, dy, *args, **kwargs):
        dx = super().backward(dy, *args, **kwargs)
        self.dW -= 0.5 * (self.x.T @ dy)
        return dx


class WrongSigmoid(mg.Sigmoid):
    """Sigmoid with the derivative y instead of y (1 - y)."""

    def backward(self, dy, *args, **kwargs):
        return dy * self.y


class OneWrongEntryDense(mg.Dense):
    """A Dense layer whose smallest weight-gradient entry is off by 9e-7 x the largest one:
    within the old per-array tolerance (1e-6 of the array's largest entry)."""

    def backward(self, dy, *args, **kwargs):
        dx = super().backward(dy, *args, **kwargs)
        self.wrong_index = np.unravel_index(int(np.argmin(np.abs(self.dW))), self.dW.shape)
        self.dW[self.wrong_index] += 9e-7 * np.abs(self.dW).max()
        return dx


def old_per_array_error(comparison):
    """The metric this module used to apply: worst difference over the array's largest entry."""
    scale = max(np.abs(comparison.analytic).max(), np.abs(comparison.numeric).max())
    return np.abs(comparison.analytic - comparison.numeric).max() / scale




def test_numerical_gradient_of_a_known_function():
    x = np.array([[0.3, -1.2], [2.0, 0.7]])
    numeric = gradcheck.numerical_gradient(lambda: np.sum(np.sin(x) * x), x)
    np.testing.assert_allclose(numeric, np.cos(x) * x + np.sin(x), rtol=1e-8)


def test_numerical_gradient_restores_the_array_exactly():
    x = np.random.default_rng(0).standard_normal((3, 4)) * 1e3
    before = x.copy()
    gradcheck.numerical_gradient(lambda: np.sum(x ** 3), x)
    assert np.array_equal(x, before)


@given(stack=layer_stacks(), batch=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_correct_gradients_pass_with_margin(stack, batch, seed):
    in_features, layers = stack
    be = mg.get_backend("numpy", dtype="float64", seed=seed)
    model = mg.Sequential(layers, backend=be)
    model.params[...] += 0.1 * be.standard_normal(model.params.shape)
    report = gradcheck.check_model(model, be.standard_normal((batch, in_features)) * 2)
    assert report.worst().ratio < 0.5, report  # measured: at most 0.09 over 2,000 draws
    gradcheck.assert_gradients_close(report)


def test_correct_gradients_on_every_backend(backend):
    model = mg.Sequential([mg.Dense(5, 7), mg.LeakyReLU(0.1), mg.Dense(7, 3), mg.Tanh(),
                           mg.Dense(3, 4), mg.Sigmoid()], backend=backend)
    report = gradcheck.check_model(model, backend.standard_normal((6, 5)))
    assert report.passed() and {c.name for c in report.comparisons} == {
        "input", "0.W", "0.b", "2.W", "2.b", "4.W", "4.b"}


@pytest.mark.parametrize("broken, wrong", [(HalfGradientDense(3, 4), {"2.W"}),
                                           (WrongSigmoid(), {"input", "0.W", "0.b"})])
def test_wrong_gradients_are_caught(broken, wrong):
    backend = mg.get_backend("numpy", "float64", seed=0)
    model = mg.Sequential([mg.Dense(5, 3), mg.Tanh(), broken], backend=backend)
    report = gradcheck.check_model(model, backend.standard_normal((4, 5)))
    assert not report.passed()
    assert {c.name for c in report.comparisons if not c.passed()} == wrong
    assert report.worst().relative_error > 1e-2
    with pytest.raises(gradcheck.GradcheckError) as error:
        gradcheck.assert_gradients_close(report)
    assert report.worst().name in str(error.value).splitlines()[0]


def test_one_wrong_small_entry_in_a_model_is_caught_and_named():
    backend = mg.get_backend("numpy", "float64", seed=0)
    wrong = OneWrongEntryDense(6, 3)
    model = mg.Sequential([mg.Dense(4, 6), mg.Tanh(), wrong], backend=backend)
    model.layers[0].W[:, 0] *= 1e-3  # hidden unit 0 ~ 0: row 0 of dL/d(2.W) ~ 1000x smaller
    report = gradcheck.check_model(model, backend.standard_normal((5, 4)))
    weights = next(c for c in report.comparisons if c.name == "2.W")
    assert old_per_array_error(weights) < 1e-6  # the old check passed this gradient
    worst = report.worst()
    assert (worst.name, worst.index) == ("2.W", wrong.wrong_index) and worst.ratio > 10
    assert [c.name for c in report.comparisons if not c.passed()] == ["2.W"]
    with pytest.raises(gradcheck.GradcheckError, match=rf"2\.W\[{wrong.wrong_index[0]}, "
                                                       rf"{wrong.wrong_index[1]}\]"):
        gradcheck.assert_gradients_close(report)


@given(shape=st.tuples(st.integers(1, 8), st.integers(2, 8)), seed=st.integers(0, 2**16),
       data=st.data())
def test_one_wrong_small_entry_fails(shape, seed, data):
    """An entry 1000x-2000x smaller than the largest, off by 1e-3 of itself: the old
    per-array error is at most 1e-6 (it passed); element-wise it is 100x over rtol."""
    numeric = np.random.default_rng(seed).uniform(0.5, 1.0, shape)  # (>= 2 entries)
    index = data.draw(st.tuples(st.integers(0, shape[0] - 1), st.integers(0, shape[1] - 1)))
    numeric[index] = 5e-4 * data.draw(st.sampled_from([1.0, -1.0]))
    analytic = numeric.copy()
    analytic[index] *= 1 + 1e-3
    comparison = gradcheck.compare("0.W", analytic, numeric)
    assert old_per_array_error(comparison) <= 1e-6
    assert not comparison.passed()
    assert comparison.worst().index == index and comparison.worst().ratio > 1
    assert comparison.worst().relative_error == pytest.approx(1e-3)
    report = gradcheck.GradcheckReport([gradcheck.compare("input", numeric, numeric), comparison])
    with pytest.raises(gradcheck.GradcheckError) as error:
        gradcheck.assert_gradients_close(report)
    assert f"0.W[{index[0]}, {index[1]}]" in str(error.value).splitlines()[0]
    assert str(index) in str(report).splitlines()[1]  # the worst array comes first


@given(scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_tolerances_are_element_wise(scale, seed):
    numeric = np.random.default_rng(seed).standard_normal((3, 4)) * scale
    close = gradcheck.compare("W", numeric * (1 + 0.9 * gradcheck.DEFAULT_RTOL), numeric)
    assert close.passed(atol=0.0) and not close.passed(rtol=1e-6, atol=0.0)
    assert not gradcheck.compare("W", numeric * (1 + 1e-4), numeric).passed(atol=0.0)


def test_atol_lets_a_tiny_entry_next_to_zero_pass():
    comparison = gradcheck.compare("b", np.array([1e-12, 1.0]), np.array([0.0, 1.0]))
    assert comparison.passed()
    assert comparison.worst().relative_error == np.inf
    assert not comparison.passed(atol=0.0) and comparison.worst(atol=0.0).index == (0,)
    assert not gradcheck.compare("b", np.array([1e-6, 1.0]), np.array([0.0, 1.0])).passed()


def test_default_atol_grows_with_the_round_off_of_the_checked_function():
    backend = mg.get_backend("numpy", "float64", seed=0)
    model = mg.Sequential([mg.Dense(32, 32), mg.Tanh(), mg.Dense(32, 32)], backend=backend)
    x = backend.standard_normal((16, 32))
    dy = backend.standard_normal((16, 32)) * 1e3  # L's terms sum to about 1e6
    report = gradcheck.check_model(model, x, dy)
    expected = np.finfo(np.float64).eps * np.sum(np.abs(model.forward(x) * dy)) / 1e-6
    assert all(c.roundoff == pytest.approx(expected) for c in report.comparisons)
    assert report.passed() and not report.passed(atol=gradcheck.DEFAULT_ATOL)


@pytest.mark.parametrize("rtol, atol", [(-1e-5, None), (1e-5, -1e-8), (float("nan"), None)])
def test_negative_tolerances_are_refused(rtol, atol):
    report = gradcheck.GradcheckReport([gradcheck.compare("b", np.ones(2), np.ones(2))])
    with pytest.raises(ValueError, match="non-negative"):
        report.passed(rtol, atol)
    with pytest.raises(ValueError, match="non-negative"):
        gradcheck.assert_gradients_close(report, rtol, atol)


def test_a_layer_can_be_checked_directly():
    x = np.random.default_rng(0).standard_normal((4, 3))
    report = gradcheck.check_model(mg.Dense(3, 2), x)
    assert report.passed() and {c.name for c in report.comparisons} == {"input", "0.W", "0.b"}
    assert gradcheck.check_model(mg.Tanh(), x).passed()


def test_a_loss_is_checked_with_its_round_off_recorded():
    logits = np.random.default_rng(0).standard_normal((6, 2)) * 4
    report = gradcheck.check_loss(mg.BCEWithLogits(), logits, 0.9)
    assert report.passed() and report.comparisons[0].roundoff > 0


def test_float32_is_refused():
    backend = mg.get_backend("numpy", "float32")
    model = mg.Sequential([mg.Dense(3, 2)], backend=backend)
    with pytest.raises(TypeError, match="need float64"):
        gradcheck.check_model(model, backend.standard_normal((2, 3)))
    with pytest.raises(TypeError, match="dtype='float64'"):
        gradcheck.check_loss(mg.BCEWithLogits(), np.zeros((2, 1), np.float32), 1.0)


def test_report_is_readable():
    comparison = gradcheck.compare("0.W", np.array([[1.0, 2.0]]), np.array([[1.0, 2.5]]))
    worst = comparison.worst()
    assert worst.index == (0, 1) and worst.difference == 0.5
    assert worst.relative_error == pytest.approx(0.5 / 2.5)
    assert worst.ratio == pytest.approx(0.5 / (gradcheck.DEFAULT_ATOL + gradcheck.DEFAULT_RTOL * 2.5))
    header, row = str(gradcheck.GradcheckReport([comparison])).splitlines()
    assert "|diff|" in header and "rel. error" in header
    assert all(text in row for text in ("0.W", "(0, 1)", "2.000000e+00", "2.500000e+00", "2.00e-01"))


def test_nan_is_the_worst_entry_and_fails():
    comparison = gradcheck.compare("W", np.array([1.0, np.nan, 3.0]), np.array([1.5, 2.0, 3.0]))
    assert comparison.worst().index == (1,) and not comparison.passed()
    report = gradcheck.GradcheckReport([gradcheck.compare("b", np.ones(2), -np.ones(2)), comparison])
    assert report.worst().name == "W" and report.worst().ratio == np.inf


def test_equal_or_empty_gradients_pass_even_at_zero_tolerance():
    assert gradcheck.compare("b", np.zeros(3), np.zeros(3)).worst(0.0, 0.0).ratio == 0.0
    assert gradcheck.compare("b", np.zeros((0, 2)), np.zeros((0, 2))).passed(0.0, 0.0)
