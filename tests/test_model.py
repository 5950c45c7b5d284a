"""Sequential: flat-buffer views, accumulation, param_grads=False, state round trips,
and gradient checks of random layer stacks."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigan as mg
from minigan.gradcheck import assert_gradients_close, check_model

ACTIVATION_MAKERS = [mg.ReLU, lambda: mg.LeakyReLU(0.2), mg.Sigmoid, mg.Tanh]


def make_mlp(backend, sizes=(4, 8, 6, 3)):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(mg.Dense(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(mg.LeakyReLU(0.2))
    return mg.Sequential(layers, backend=backend)


@st.composite
def layer_stacks(draw):
    """A random stack: Dense layers of width 1..32 with random activations between."""
    widths = draw(st.lists(st.integers(1, 32), min_size=2, max_size=4))
    layers = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers.append(mg.Dense(n_in, n_out, init=draw(st.sampled_from(mg.layers.INITIALISERS))))
        if draw(st.booleans()):
            layers.append(draw(st.sampled_from(ACTIVATION_MAKERS))())
    return widths[0], layers


@given(stack=layer_stacks(), batch=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_random_stacks_have_correct_gradients(stack, batch, seed):
    in_features, layers = stack
    be = mg.get_backend("numpy", dtype="float64", seed=seed)
    model = mg.Sequential(layers, backend=be)
    model.params[...] += 0.1 * be.standard_normal(model.params.shape)  # non-zero biases
    assert_gradients_close(check_model(model, be.standard_normal((batch, in_features)) * 2))


def test_parameters_and_gradients_are_views_of_the_flat_buffers(backend):
    model = make_mlp(backend)
    xp = backend.xp
    expected_size = 4 * 8 + 8 + 8 * 6 + 6 + 6 * 3 + 3
    assert model.params.shape == model.grads.shape == (expected_size,) == (model.num_params,)
    assert model.params.flags.c_contiguous and model.grads.flags.c_contiguous
    for dense in (model.layers[0], model.layers[2], model.layers[4]):
        assert xp.shares_memory(dense.W, model.params) and xp.shares_memory(dense.b, model.params)
        assert xp.shares_memory(dense.dW, model.grads) and xp.shares_memory(dense.db, model.grads)
    model.params[...] = 0.5
    assert float(model.layers[2].W[1, 1]) == 0.5
    model.layers[4].db[...] = 2.0
    assert float(model.grads[-1]) == 2.0 and float(model.grads.sum()) == 6.0


def test_views_cover_the_buffer_without_overlap(backend):
    model = make_mlp(backend)
    model.params[...] = backend.xp.arange(model.num_params, dtype=backend.dtype)
    seen = np.concatenate([backend.to_numpy(p).ravel() for _, p, _ in model.named_parameters()])
    assert np.array_equal(np.sort(seen), np.arange(model.num_params))


def after_one_backward(backend):
    """A model, its input and output gradient, and a host copy of the gradients after one backward."""
    model = make_mlp(backend)
    x, dy = backend.standard_normal((5, 4)), backend.standard_normal((5, 3))
    model.forward(x)
    model.backward(dy)
    return model, x, dy, backend.to_numpy(model.grads).copy()


def test_gradients_accumulate_until_zero_grad(backend):
    model, x, dy, once = after_one_backward(backend)
    assert np.abs(once).max() > 0
    model.forward(x)
    model.backward(dy)
    np.testing.assert_allclose(backend.to_numpy(model.grads), 2 * once, rtol=1e-12)
    model.zero_grad()
    assert not np.any(backend.to_numpy(model.grads))


class AddOnlyDense(mg.Dense):
    """A layer written for the original protocol: backward without `accumulate`."""

    def backward(self, dy, param_grads=True, input_grad=True):
        return super().backward(dy, param_grads, input_grad)


@pytest.mark.parametrize("first", [mg.Dense, AddOnlyDense])
def test_accumulate_false_overwrites_the_gradients(backend, first):
    model = mg.Sequential([first(4, 8), mg.LeakyReLU(0.2), mg.Dense(8, 3), mg.Sigmoid()], backend=backend)
    x, dy = backend.standard_normal((5, 4)), backend.standard_normal((5, 3))
    model.forward(x)
    model.backward(dy)
    fresh = backend.to_numpy(model.grads).copy()
    model.grads[...] = backend.standard_normal(model.grads.shape)  # stale values to overwrite
    model.forward(x)
    dx = model.backward(dy, accumulate=False)
    np.testing.assert_allclose(backend.to_numpy(model.grads), fresh, rtol=1e-12)
    assert dx.shape == (5, 4)


def test_param_grads_false_returns_dx_and_leaves_gradients_alone(backend):
    model = make_mlp(backend)
    x, dy = backend.standard_normal((5, 4)), backend.standard_normal((5, 3))
    model.grads[...] = backend.standard_normal(model.grads.shape)
    before = backend.to_numpy(model.grads).copy()
    model.forward(x)
    dx_only = backend.to_numpy(model.backward(dy, param_grads=False))
    assert np.array_equal(backend.to_numpy(model.grads), before)
    model.forward(x)
    dx_full = backend.to_numpy(model.backward(dy))
    np.testing.assert_allclose(dx_only, dx_full, rtol=1e-13)
    assert not np.array_equal(backend.to_numpy(model.grads), before)


def test_state_dict_round_trip_is_exact(backend):
    source = make_mlp(backend)
    source.params[...] += backend.standard_normal(source.params.shape)
    state = source.state_dict()
    assert set(state) == {"0.W", "0.b", "2.W", "2.b", "4.W", "4.b"}
    assert all(isinstance(v, np.ndarray) for v in state.values())
    target = make_mlp(mg.get_backend(backend.name, dtype="float64", seed=99))
    target.load_state_dict(state)
    assert np.array_equal(backend.to_numpy(target.params), backend.to_numpy(source.params))
    state["0.W"][0, 0] += 1  # the state is a copy, not a view
    assert not np.array_equal(backend.to_numpy(source.params), np.concatenate(
        [state[k].ravel() for k in ("0.W", "0.b", "2.W", "2.b", "4.W", "4.b")]))


def test_load_state_dict_names_every_mismatch():
    model = make_mlp(mg.get_backend("numpy"))
    state = model.state_dict()
    del state["2.b"]
    state["9.W"] = np.zeros(3)
    state["0.W"] = np.zeros((8, 4))
    with pytest.raises(ValueError) as error:
        model.load_state_dict(state)
    message = str(error.value)
    assert "missing ['2.b']" in message and "unexpected ['9.W']" in message
    assert "0.W has shape (8, 4), expected (4, 8)" in message


def test_bad_construction():
    with pytest.raises(TypeError, match="non-empty list"):
        mg.Sequential([])
    with pytest.raises(TypeError, match="non-empty list"):
        mg.Sequential([lambda x: x])
    relu = mg.ReLU()
    with pytest.raises(ValueError, match="appears twice"):
        mg.Sequential([mg.Dense(2, 2), relu, mg.Dense(2, 2), relu])


def test_input_grad_false_skips_only_the_input_gradient(backend):
    model, x, dy, full = after_one_backward(backend)
    model.zero_grad()
    model.forward(x)
    assert model.backward(dy, input_grad=False) is None
    np.testing.assert_array_equal(backend.to_numpy(model.grads), full)
