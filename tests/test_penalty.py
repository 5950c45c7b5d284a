"""The WGAN-GP penalty: its value against its definition, its parameter gradient (double
backprop) against central differences over random critics, and the clear refusals."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigan as mg
from minigan.gradcheck import compare, numerical_gradient
from minigan.penalty import gradient_penalty

SUPPORTED = [mg.ReLU, lambda: mg.LeakyReLU(0.2), mg.Tanh]


def reference_penalty(critic, x, weight, eps=1e-12):
    """weight * mean((||grad_x D(x)|| - 1)^2), with the input gradient from a plain backward."""
    output = critic.forward(x)
    g = critic.backward(np.ones_like(output), param_grads=False)
    return weight * np.mean((np.sqrt(np.sum(g * g, axis=1) + eps) - 1) ** 2)


@st.composite
def critics(draw):
    """Random critics of Dense layers (width 1..12) with supported activations between,
    sometimes two activations in a row or one in front."""
    widths = draw(st.lists(st.integers(1, 12), min_size=1, max_size=3))
    layers = [draw(st.sampled_from(SUPPORTED))()] if draw(st.booleans()) else []
    for n_in, n_out in zip(widths, widths[1:] + [1]):
        layers.append(mg.Dense(n_in, n_out))
        if n_out != 1:
            for _ in range(draw(st.integers(1, 2))):
                layers.append(draw(st.sampled_from(SUPPORTED))())
    return widths[0], layers


@given(critic=critics(), batch=st.integers(1, 8), seed=st.integers(0, 2**16),
       weight=st.sampled_from([1.0, 10.0]))
def test_penalty_parameter_gradient(critic, batch, seed, weight):
    in_features, layers = critic
    be = mg.get_backend("numpy", "float64", seed=seed)
    D = mg.Sequential(layers, backend=be, input_shape=(in_features,))
    D.params[...] += 0.5 * be.standard_normal(D.params.shape)
    x = be.standard_normal((batch, in_features))
    D.zero_grad()
    value = gradient_penalty(D, x, weight)
    assert value == pytest.approx(reference_penalty(D, x, weight), rel=1e-12)
    numeric = numerical_gradient(lambda: reference_penalty(D, x, weight), D.params)
    comparison = compare("penalty", D.grads, numeric)
    assert comparison.passed(), comparison


def test_penalty_adds_to_existing_gradients():
    be = mg.get_backend("numpy", "float64", seed=0)
    D = mg.Sequential([mg.Dense(3, 5), mg.Tanh(), mg.Dense(5, 1)], backend=be)
    x = be.standard_normal((4, 3))
    D.zero_grad()
    gradient_penalty(D, x, 10.0)
    alone = D.grads.copy()
    D.grads[...] = 1.0
    gradient_penalty(D, x, 10.0)
    np.testing.assert_allclose(D.grads, alone + 1.0, rtol=1e-13)


def test_zero_input_gradient_stays_finite():
    be = mg.get_backend("numpy", "float64", seed=0)
    D = mg.Sequential([mg.Dense(3, 4), mg.ReLU(), mg.Dense(4, 1)], backend=be)
    D.params[...] = 0.0  # grad_x D = 0 everywhere: the norm is sqrt(eps)
    D.zero_grad()
    value = gradient_penalty(D, be.standard_normal((5, 3)), 10.0)
    assert value == pytest.approx(10.0 * (1 - 1e-6) ** 2)
    assert np.all(np.isfinite(D.grads))


def test_unsupported_layers_are_refused():
    be = mg.get_backend("numpy", "float64")
    D = mg.Sequential([mg.Dense(3, 4), mg.Sigmoid(), mg.Dense(4, 1)], backend=be)
    with pytest.raises(TypeError, match="layer 1 is Sigmoid"):
        gradient_penalty(D, be.standard_normal((2, 3)))
    G = mg.Sequential([mg.Dense(2, 3)], backend=be)
    with pytest.raises(TypeError, match="supports critics made of Dense, ReLU, LeakyReLU, Tanh"):
        mg.GAN(G, D, loss="wgan-gp")


def test_float32_penalty_stays_float32():
    be = mg.get_backend("numpy", "float32", seed=0)
    D = mg.Sequential([mg.Dense(3, 4), mg.Tanh(), mg.Dense(4, 1)], backend=be)
    D.zero_grad()
    gradient_penalty(D, be.standard_normal((5, 3)))
    assert D.grads.dtype == np.float32 and np.any(D.grads != 0)
