"""Each layer's forward against an independent formula and its backward against
central differences (float64), initialisers, dtypes and errors. Numeric tests run on each
available backend (`backend` / `BACKENDS`, tests/conftest.py)."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigan as mg
from minigan.gradcheck import assert_gradients_close, check_model

from conftest import BACKENDS

ACTIVATIONS = {
    "relu": (mg.ReLU, lambda x: max(x, 0.0)),
    "leaky_relu": (lambda: mg.LeakyReLU(0.2), lambda x: x if x > 0 else 0.2 * x),
    "sigmoid": (mg.Sigmoid, lambda x: 0.5 * (1.0 + math.tanh(0.5 * x))),
    "tanh": (mg.Tanh, math.tanh),
}


def away_from_zero(x, margin=1e-2):
    """Moves entries off the ReLU kink so central differences never straddle it."""
    return np.where(x >= 0, x + margin, x - margin)


def batch_and_features():
    return st.tuples(st.integers(1, 16), st.integers(1, 32))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_forward_matches_formula(backend, name):
    make, formula = ACTIVATIONS[name]
    model = mg.Sequential([make()], backend=backend, input_shape=(7,))
    x = np.linspace(-6, 6, 49).reshape(7, 7)
    expected = np.vectorize(formula)(x)
    np.testing.assert_allclose(backend.to_numpy(model.forward(backend.asarray(x))), expected,
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@given(shape=batch_and_features(), seed=st.integers(0, 2**16))
def test_activation_gradients(backend_name, name, shape, seed):
    be = mg.get_backend(backend_name, dtype="float64", seed=seed)
    # |x| <= 3 keeps tanh and sigmoid out of saturation, where the derivative drops
    # below what central differences can resolve.
    x = away_from_zero(np.random.default_rng(seed).uniform(-3, 3, shape))
    assert_gradients_close(check_model(ACTIVATIONS[name][0](), be.asarray(x)))


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("init", mg.layers.INITIALISERS)
@given(batch=st.integers(1, 16), in_features=st.integers(1, 32), out_features=st.integers(1, 32),
       seed=st.integers(0, 2**16))
def test_dense_gradients(backend_name, init, batch, in_features, out_features, seed):
    be = mg.get_backend(backend_name, dtype="float64", seed=seed)
    model = mg.Sequential([mg.Dense(in_features, out_features, init=init)], backend=be)
    model.params[...] = be.asarray(np.random.default_rng(seed).standard_normal(model.num_params))  # bias too
    x = be.standard_normal((batch, in_features))
    assert_gradients_close(check_model(model, x))


def test_gradients_on_every_backend(backend):
    model = mg.Sequential([mg.Dense(5, 7), mg.LeakyReLU(0.1), mg.Dense(7, 3), mg.Tanh(),
                           mg.Dense(3, 4), mg.Sigmoid()], backend=backend)
    assert_gradients_close(check_model(model, backend.standard_normal((6, 5))))


def test_dense_forward_is_affine(backend):
    model = mg.Sequential([mg.Dense(4, 3)], backend=backend)
    dense = model.layers[0]
    dense.b[...] = backend.asarray([1.0, -2.0, 0.5])
    x = np.arange(8.0).reshape(2, 4)
    W = backend.to_numpy(dense.W)
    expected = np.array([[sum(x[n, i] * W[i, j] for i in range(4)) + [1.0, -2.0, 0.5][j]
                          for j in range(3)] for n in range(2)])
    np.testing.assert_allclose(backend.to_numpy(model.forward(backend.asarray(x))), expected, rtol=1e-13)


@pytest.mark.parametrize("init, check", [
    ("he", lambda W, fan_in, fan_out: abs(W.std() / math.sqrt(2 / fan_in) - 1) < 0.02),
    ("xavier", lambda W, fan_in, fan_out: abs(np.abs(W).max() / math.sqrt(6 / (fan_in + fan_out)) - 1) < 0.01
     and abs(W.std() / math.sqrt(2 / (fan_in + fan_out)) - 1) < 0.02),
    ("normal", lambda W, fan_in, fan_out: abs(W.std() / 0.02 - 1) < 0.02),
])
def test_initialisers(init, check):
    be = mg.get_backend("numpy", dtype="float64", seed=1)
    model = mg.Sequential([mg.Dense(400, 300, init=init)], backend=be)
    dense = model.layers[0]
    assert check(dense.W, 400, 300)
    assert abs(dense.W.mean()) < 0.02 * dense.W.std()
    assert np.all(dense.b == 0)


def test_initialisation_is_seeded():
    def weights(seed):
        return mg.Sequential([mg.Dense(5, 5)], backend=mg.get_backend("numpy", seed=seed)).params
    assert np.array_equal(weights(4), weights(4))
    assert not np.array_equal(weights(4), weights(5))


def test_sigmoid_never_overflows(backend):
    model = mg.Sequential([mg.Sigmoid()], backend=backend, input_shape=(9,))
    x = backend.asarray([[-1e308, -1e4, -800.0, -40.0, 0.0, 40.0, 800.0, 1e4, 1e308]])
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        y = backend.to_numpy(model.forward(x))[0]
    assert np.all(np.isfinite(y)) and np.all((y >= 0) & (y <= 1))
    assert y[0] == 0.0 and y[-1] == 1.0 and y[4] == 0.5
    np.testing.assert_allclose(y[3], math.exp(-40.0) / (1 + math.exp(-40.0)), rtol=1e-14)


@pytest.mark.parametrize("make", [lambda: mg.Dense(3, 3), mg.ReLU, lambda: mg.LeakyReLU(0.2),
                                  mg.Sigmoid, mg.Tanh])
def test_float32_stays_float32(backend32, make):
    model = mg.Sequential([make()], backend=backend32, input_shape=(3,))
    x = backend32.standard_normal((4, 3))
    y = model.forward(x)
    assert y.dtype == np.float32
    assert model.backward(backend32.asarray(np.ones(y.shape))).dtype == np.float32
    assert model.grads.dtype == np.float32


def test_dense_rejects_wrong_input_shape():
    model = mg.Sequential([mg.Dense(4, 3)], backend=mg.get_backend("numpy"))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 4\), got \(2, 5\)"):
        model.forward(np.ones((2, 5), dtype=np.float32))


@pytest.mark.parametrize("make, words", [
    (lambda: mg.Dense(0, 3), "in_features must be a positive integer"),
    (lambda: mg.Dense(3, 2.5), "out_features must be a positive integer"),
    (lambda: mg.Dense(3, 3, init="glorot"), "init must be one of"),
    (lambda: mg.LeakyReLU(-0.1), "slope must be in"),
    (lambda: mg.LeakyReLU(1.5), "slope must be in"),
])
def test_bad_layer_arguments(make, words):
    with pytest.raises(ValueError, match=words):
        make()


def test_defining_a_layer_registers_it_for_loading():
    class Doubling(mg.Layer):
        def forward(self, x):
            return 2 * x

        def backward(self, dy, grads="add", input_grad=True):
            return 2 * dy

    assert mg.layers.layer_from_config({"type": "Doubling"}).__class__ is Doubling
    model = mg.Sequential([mg.Dense(2, 3), Doubling()])
    assert type(mg.Sequential.from_config(model.config()).layers[1]) is Doubling


def test_unknown_and_clashing_layer_types_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown layer type 'Teleport'; known: \[.*'Dense'"):
        mg.layers.layer_from_config({"type": "Teleport"})
    with pytest.raises(ValueError, match="a layer type named 'Dense' is already registered"):
        type("Dense", (mg.Layer,), {})


def test_flatten_and_reshape_are_channels_last_reshapes(backend):
    x = backend.standard_normal((3, 2, 4, 5))
    flatten, reshape = mg.Flatten(), mg.Reshape((5, 8))
    model = mg.Sequential([flatten, reshape], backend=backend, input_shape=(2, 4, 5))
    y = model.forward(x)
    host = backend.to_numpy
    assert np.array_equal(host(y), host(x).reshape(3, 5, 8))
    assert np.array_equal(host(flatten.forward(x)), host(x).reshape(3, -1))
    dy = backend.standard_normal((3, 5, 8))
    assert np.array_equal(host(model.backward(dy)), host(dy).reshape(3, 2, 4, 5))
    assert mg.Reshape((7, 7, 128)).config() == {"type": "Reshape", "shape": [7, 7, 128]}
    with pytest.raises(ValueError, match="Reshape shape entry must be a positive integer, got 0"):
        mg.Reshape((0, 3))
