"""The WGAN-GP penalty: its value against its definition, its parameter gradient (double
backprop) against central differences over random critics, and the clear refusals.
Every test runs on each available backend; the Hypothesis test takes it as a parameter
(`BACKENDS`), since Hypothesis refuses function-scoped fixtures."""
import numpy as np
import pytest
from conftest import BACKENDS
from hypothesis import given
from hypothesis import strategies as st

import minigan as mg
from minigan.gradcheck import MACHINE_EPSILON, compare, numerical_gradient
from minigan.penalty import gradient_penalty

SUPPORTED = [mg.ReLU, lambda: mg.LeakyReLU(0.2), mg.Tanh]


def reference_penalty(critic, x, weight, eps=1e-12):
    """weight * mean((||grad_x D(x)|| - 1)^2), with the input gradient from a plain backward
    (computed on the critic's backend, the formula on the host)."""
    output = critic.forward(x)
    g = critic.backend.to_numpy(critic.backward(critic.backend.xp.ones_like(output), param_grads=False))
    norms = np.sqrt(np.sum(g * g, axis=tuple(range(1, g.ndim))) + eps)
    return weight * np.mean((norms - 1) ** 2)


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


@pytest.mark.parametrize("backend_name", BACKENDS)
@given(critic=critics(), batch=st.integers(1, 8), seed=st.integers(0, 2**16),
       weight=st.sampled_from([1.0, 10.0]))
def test_penalty_parameter_gradient(backend_name, critic, batch, seed, weight):
    """The penalty's value is its definition's; the gradient it adds matches central differences."""
    in_features, layers = critic
    be = mg.get_backend(backend_name, "float64", seed=seed)
    D = mg.Sequential(layers, backend=be, input_shape=(in_features,))
    D.params[...] += 0.5 * be.standard_normal(D.params.shape)
    x = be.standard_normal((batch, in_features))
    D.zero_grad()
    value = gradient_penalty(D, x, weight)
    assert value == pytest.approx(reference_penalty(D, x, weight), rel=1e-12)
    numeric = numerical_gradient(lambda: reference_penalty(D, x, weight), D.params)
    # central differences of a penalty of size |P| carry round-off of about eps |P| / h
    comparison = compare("penalty", D.grads, numeric, roundoff=MACHINE_EPSILON * abs(value) / 1e-6)
    assert comparison.passed(), comparison.worst()


def test_penalty_adds_to_existing_gradients(backend):
    """The penalty's gradient is added to what D.grads holds, not written over it."""
    D = mg.Sequential([mg.Dense(3, 5), mg.Tanh(), mg.Dense(5, 1)], backend=backend)
    x = backend.standard_normal((4, 3))
    D.zero_grad()
    gradient_penalty(D, x, 10.0)
    alone = backend.to_numpy(D.grads).copy()
    D.grads[...] = 1.0
    gradient_penalty(D, x, 10.0)
    np.testing.assert_allclose(backend.to_numpy(D.grads), alone + 1.0, rtol=1e-13)


def test_zero_input_gradient_stays_finite(backend):
    """With a zero input gradient the norm is sqrt(eps): a finite value and finite gradients."""
    D = mg.Sequential([mg.Dense(3, 4), mg.ReLU(), mg.Dense(4, 1)], backend=backend)
    D.params[...] = 0.0  # grad_x D = 0 everywhere: the norm is sqrt(eps)
    D.zero_grad()
    value = gradient_penalty(D, backend.standard_normal((5, 3)), 10.0)
    assert value == pytest.approx(10.0 * (1 - 1e-6) ** 2)
    assert np.all(np.isfinite(backend.to_numpy(D.grads)))


def test_unsupported_layers_are_refused(backend):
    """A critic with a layer the penalty cannot differentiate twice is refused, naming it."""
    D = mg.Sequential([mg.Dense(3, 4), mg.Sigmoid(), mg.Dense(4, 1)], backend=backend)
    with pytest.raises(ValueError, match="layer 1 is Sigmoid"):
        gradient_penalty(D, backend.standard_normal((2, 3)))
    G = mg.Sequential([mg.Dense(2, 3)], backend=backend)
    with pytest.raises(ValueError, match=r"supports critics made of Dense, .*ReLU, LeakyReLU, Tanh layers; "
                                         r"layer 1 is Sigmoid"):
        mg.GAN(G, D, loss="wgan-gp")


def test_float32_penalty_stays_float32(backend32):
    """On a float32 backend the penalty's gradients are float32 (and not all zero)."""
    D = mg.Sequential([mg.Dense(3, 4), mg.Tanh(), mg.Dense(4, 1)], backend=backend32)
    D.zero_grad()
    gradient_penalty(D, backend32.standard_normal((5, 3)))
    assert D.grads.dtype == np.float32 and np.any(backend32.to_numpy(D.grads) != 0)


def conv_critic(backend):
    """A convolutional critic: Conv LeakyReLU Conv Tanh Flatten Dense, random weights."""
    critic = mg.Sequential([mg.Conv2d(2, 4, 3, 2, 1), mg.LeakyReLU(0.2), mg.Conv2d(4, 5, 3, 1, 0), mg.Tanh(),
                            mg.Flatten(), mg.Dense(20, 1)], backend=backend, input_shape=(7, 7, 2))
    critic.params[...] = backend.asarray(0.5 * np.random.default_rng(0).standard_normal(critic.params.shape))
    return critic


def test_convolutional_critic_parameter_gradient(backend):
    """A convolution's second derivative is a convolution: the hand-written double backprop
    through Conv2d and Flatten against central differences of the penalty."""
    critic = conv_critic(backend)
    x = backend.asarray(np.random.default_rng(1).standard_normal((3, 7, 7, 2)))
    critic.zero_grad()
    value = gradient_penalty(critic, x, 10.0)
    assert value == pytest.approx(reference_penalty(critic, x, 10.0), rel=1e-12)
    numeric = numerical_gradient(lambda: reference_penalty(critic, x, 10.0), critic.params)
    assert compare("critic", critic.grads, numeric).passed()


def test_convolutional_critic_matches_pytorch_double_backprop():
    torch = pytest.importorskip("torch", reason="PyTorch is the independent oracle (pip install torch==2.13.0)")
    critic = conv_critic(mg.get_backend("numpy", "float64", seed=0))
    x = np.random.default_rng(1).standard_normal((3, 7, 7, 2))
    critic.zero_grad()
    value = gradient_penalty(critic, x, 10.0)
    conv1, _, conv2, _, _, dense = critic.layers
    weights = [torch.tensor(np.ascontiguousarray(w), requires_grad=True) for w in (
        conv1.W.transpose(3, 2, 0, 1), conv1.b, conv2.W.transpose(3, 2, 0, 1), conv2.b, dense.W, dense.b)]
    F = torch.nn.functional
    tx = torch.tensor(x, requires_grad=True)
    h = F.leaky_relu(F.conv2d(tx.permute(0, 3, 1, 2), weights[0], weights[1], 2, 1), 0.2)
    h = torch.tanh(F.conv2d(h, weights[2], weights[3], 1, 0)).permute(0, 2, 3, 1).reshape(3, -1)
    (g,) = torch.autograd.grad((h @ weights[4] + weights[5]).sum(), tx, create_graph=True)
    penalty = 10 * ((torch.sqrt((g * g).sum(dim=(1, 2, 3)) + 1e-12) - 1) ** 2).mean()
    penalty.backward()
    assert value == pytest.approx(penalty.item(), rel=1e-12)
    ours = [conv1.dW.transpose(3, 2, 0, 1), conv1.db, conv2.dW.transpose(3, 2, 0, 1), conv2.db, dense.dW]
    for mine, weight in zip(ours, weights):
        theirs = weight.grad.numpy()
        assert np.abs(mine - theirs).max() <= 1e-8 * np.abs(theirs).max()
    assert weights[5].grad is None and np.all(dense.db == 0)  # the penalty does not see the last bias
