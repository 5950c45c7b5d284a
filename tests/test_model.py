"""Sequential: flat-buffer views, accumulation, param_grads=False, state round trips,
and gradient checks of random layer stacks."""
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigan as mg
from minigan.gradcheck import assert_gradients_close, check_model

from conftest import BACKENDS, layer_stacks



def make_mlp(backend, sizes=(4, 8, 6, 3)):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(mg.Dense(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(mg.LeakyReLU(0.2))
    return mg.Sequential(layers, backend=backend)




@pytest.mark.parametrize("backend_name", BACKENDS)
@given(stack=layer_stacks(), batch=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_random_stacks_have_correct_gradients(backend_name, stack, batch, seed):
    in_features, layers = stack
    be = mg.get_backend(backend_name, dtype="float64", seed=seed)
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


def test_accumulate_false_overwrites_the_gradients(backend):
    model = mg.Sequential([mg.Dense(4, 8), mg.LeakyReLU(0.2), mg.Dense(8, 3), mg.Sigmoid()], backend=backend)
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


class RunningScale(mg.Layer):
    """y = s * x with one trained scale s and a buffer `seen` counting forward passes in
    training mode; rows are independent only in evaluation mode (a stand-in for BatchNorm)."""

    def param_shapes(self):
        return {"s": (1,)}

    def buffer_shapes(self):
        return {"seen": (1,)}

    @property
    def rows_independent(self):
        return not self.training

    def reset_parameters(self):
        self.s[...] = 2.0
        self.seen[...] = 0.0

    def forward(self, x):
        if self.training:
            self.seen += 1
        self.x = x
        return self.s * x

    def backward(self, dy, grads="add", input_grad=True):
        if grads == "add":
            self.ds += (dy * self.x).sum()
        elif grads == "write":
            self.ds[...] = (dy * self.x).sum()
        return dy * self.s if input_grad else None


def test_shapes_are_known_at_construction(backend):
    model = mg.Sequential([mg.Reshape((2, 3, 2)), mg.Tanh(), mg.Flatten(), mg.Dense(12, 5)],
                          backend=backend, input_shape=(12,))
    assert model.shapes == [(12,), (2, 3, 2), (2, 3, 2), (12,), (5,)]
    assert model.input_shape == (12,) and model.output_shape == (5,)
    assert model.in_features == 12 and model.out_features == 5
    assert model.forward(backend.standard_normal((4, 12))).shape == (4, 5)
    image_model = mg.Sequential([mg.Flatten(), mg.Dense(12, 1)], backend=backend, input_shape=(2, 3, 2))
    with pytest.raises(ValueError, match=r"input has shape \(2, 3, 2\), not \(features,\)"):
        image_model.in_features


@pytest.mark.parametrize("layers, input_shape, words", [
    ([mg.Dense(4, 8), mg.ReLU(), mg.Dense(6, 1)], None,
     r"layer 2 \(Dense\(in_features=6, out_features=1, init='he'\)\) cannot take input shape \(8,\): "
     r"expects input shape \(6,\)"),
    ([mg.Reshape((3, 3))], (8,), r"layer 0 \(Reshape\(shape=\[3, 3\]\)\) cannot take input shape \(8,\): "
                                 r"cannot reshape 8 values per example to \(3, 3\)"),
    ([mg.Dense(4, 2)], (2, 2), r"layer 0 .* cannot take input shape \(2, 2\): .*add a Flatten"),
    ([mg.ReLU()], None, "give Sequential an input_shape: the first layer, ReLU\\(\\), does not imply one"),
    ([mg.ReLU()], (0, 3), "input_shape must be a non-empty tuple of positive sizes"),
])
def test_shape_mismatches_name_the_layer_its_index_and_both_shapes(layers, input_shape, words):
    with pytest.raises(ValueError, match=words):
        mg.Sequential(layers, input_shape=input_shape)


def test_forward_refuses_an_input_of_the_wrong_shape(backend):
    model = make_mlp(backend)
    with pytest.raises(ValueError, match=r"model expects input of shape \(N, 4\), got \(3, 5\)"):
        model.forward(backend.standard_normal((3, 5)))


def test_buffers_are_saved_and_loaded_but_never_trained(backend):
    model = mg.Sequential([mg.Dense(3, 2), RunningScale()], backend=backend)
    assert model.buffers.size == 1 and model.num_params == 3 * 2 + 2 + 1
    assert dict(model.named_buffers()).keys() == {"1.seen"}
    model.forward(backend.standard_normal((4, 3)))
    model.forward(backend.standard_normal((4, 3)))
    assert float(model.layers[1].seen[0]) == 2.0  # a view into the buffer array
    opt = mg.SGD(model, lr=0.1)
    model.backward(backend.standard_normal((4, 2)))
    opt.step()
    assert float(model.buffers[0]) == 2.0  # the optimizer updates parameters only
    state = model.state_dict()
    assert set(state) == {"0.W", "0.b", "1.s", "1.seen"} and state["1.seen"].tolist() == [2.0]
    other = mg.Sequential([mg.Dense(3, 2), RunningScale()], backend=backend)
    other.load_state_dict(state)
    assert np.array_equal(backend.to_numpy(other.buffers), backend.to_numpy(model.buffers))
    assert np.array_equal(backend.to_numpy(other.params), backend.to_numpy(model.params))
    with pytest.raises(ValueError, match=r"missing \['1.seen'\]"):
        other.load_state_dict({name: value for name, value in state.items() if name != "1.seen"})


def test_train_and_eval_switch_every_layer_and_row_independence(backend):
    model = mg.Sequential([mg.Dense(3, 2), RunningScale(), mg.ReLU()], backend=backend)
    assert model.training and not model.rows_independent
    assert model.eval() is model
    assert not model.training and all(not layer.training for layer in model.layers)
    assert model.rows_independent
    model.forward(backend.standard_normal((4, 3)))
    assert float(model.layers[1].seen[0]) == 0.0  # evaluation mode leaves the buffer alone
    model.train()
    assert all(layer.training for layer in model.layers) and not model.rows_independent
    assert make_mlp(backend).rows_independent


@pytest.mark.parametrize("param_grads, accumulate, expected", [
    (True, True, "add"), (True, False, "write"), (False, True, "skip"), (False, False, "skip")])
def test_the_public_keywords_map_to_one_grads_mode(backend, param_grads, accumulate, expected):
    seen = []

    class Spy(mg.ReLU):
        def backward(self, dy, grads="add", input_grad=True):
            seen.append((grads, input_grad))
            return super().backward(dy, grads, input_grad)

    model = mg.Sequential([mg.Dense(3, 3), Spy()], backend=backend)
    model.forward(backend.standard_normal((2, 3)))
    model.backward(backend.standard_normal((2, 3)), param_grads=param_grads, accumulate=accumulate,
                   input_grad=False)
    assert seen == [(expected, True)]


def test_config_round_trip_rebuilds_image_models(backend):
    model = mg.Sequential([mg.Flatten(), mg.Dense(12, 6), mg.LeakyReLU(0.2), mg.Reshape((3, 2))],
                          backend=backend, input_shape=(2, 3, 2))
    rebuilt = mg.Sequential.from_config(model.config(), backend=backend)
    assert rebuilt.config() == model.config() and rebuilt.shapes == model.shapes
    legacy = mg.Sequential.from_config(make_mlp(backend).config()["layers"], backend=backend)
    assert legacy.input_shape == (4,)  # minigan 0.1 saved a bare list of layers


# ---------------------------------------------------------------- intermediate activations


def every_layer_model(backend):
    """A float64 image model with one layer of every kind from layers.py, conv.py and norm.py
    (shapes: (4, 4, 2) -> (2, 2, 3) -> (4, 4, 2) -> (32,) -> (2, 2, 1) -> (4,) -> (1,)),
    parameters and BatchNorm statistics away from their initial values."""
    layers = [mg.Conv2d(2, 3, 3, stride=2, padding=1), mg.BatchNorm(3), mg.LeakyReLU(0.2),
              mg.ConvTranspose2d(3, 2, 2, stride=2), mg.Tanh(), mg.Flatten(), mg.Dense(32, 4),
              mg.ReLU(), mg.Reshape((2, 2, 1)), mg.Sigmoid(), mg.Flatten(), mg.Dense(4, 1)]
    model = mg.Sequential(layers, backend=backend, input_shape=(4, 4, 2))
    model.params[...] = backend.standard_normal(model.params.shape) * 0.5
    model.buffers[...] = backend.uniform(model.buffers.shape) + 0.5
    return model


def central_differences(objective, model, x, dx, last=None):
    """A gradient-check report of dx and the model's parameter gradients (of layers 0..last,
    all when None) against central differences of objective()."""
    gradcheck = mg.gradcheck
    comparisons = [gradcheck.compare("input", dx, gradcheck.numerical_gradient(objective, x))]
    comparisons += [gradcheck.compare(name, grad, gradcheck.numerical_gradient(objective, param))
                    for name, param, grad in model.named_parameters()
                    if last is None or int(name.split(".")[0]) <= last]
    return gradcheck.GradcheckReport(comparisons)


def prefix_of(model, last):
    """A new Sequential of the model's layers 0..last with the same parameters and buffers."""
    config = model.config()
    prefix = mg.Sequential.from_config({**config, "layers": config["layers"][:last + 1]}, model.backend)
    prefix.load_state_dict({name: value for name, value in model.state_dict().items()
                            if int(name.split(".")[0]) <= last})
    return prefix.train(model.training)


@pytest.mark.parametrize("training", [True, False])
def test_forward_until_a_layer_is_the_first_layers_alone(backend, training):
    """forward(x, until=l) is the output of a Sequential of layers 0..l (negative l counts
    from the end), and the caches of the later layers keep the earlier full pass."""
    model = every_layer_model(backend).train(training)
    x = backend.standard_normal((3, 4, 4, 2))
    count = len(model.layers)
    for last in range(count):
        model.forward(backend.standard_normal((3, 4, 4, 2)))
        later = [{name: id(value) for name, value in vars(layer).items()} for layer in model.layers[last + 1:]]
        expected = backend.to_numpy(prefix_of(model, last).forward(x))
        for until in (last, last - count):
            features = model.forward(x, until=until)
            assert features.shape == (3, *model.shapes[last + 1])
            np.testing.assert_allclose(backend.to_numpy(features), expected, rtol=1e-13, atol=1e-15)
        for layer, before in zip(model.layers[last + 1:], later):  # the same cached objects
            assert {name: id(value) for name, value in vars(layer).items()} == before, layer
    np.testing.assert_array_equal(backend.to_numpy(model.forward(x, until=-1)), backend.to_numpy(model.forward(x)))


@pytest.mark.parametrize("last", [1, 5, 9])
def test_backward_from_a_layer_is_that_of_the_first_layers(backend, last):
    """backward(dy, from_layer=l) after forward(x, until=l) gives the input and parameter
    gradients of sum(layer l's output * dy): those of a Sequential of layers 0..l, and
    central differences of it (float64); the later layers' gradients stay as they were."""
    model = every_layer_model(backend)
    x = backend.standard_normal((3, 4, 4, 2))
    dy = backend.standard_normal((3, *model.shapes[last + 1]))
    prefix = prefix_of(model, last)
    prefix.zero_grad()
    prefix.forward(x)
    prefix_dx = backend.to_numpy(prefix.backward(dy))
    model.grads[...] = 7.0  # stale values that accumulate=False overwrites up to layer l only
    model.forward(x, until=last)
    dx = model.backward(dy, accumulate=False, from_layer=last - len(model.layers))

    def objective():
        return backend.xp.sum(model.forward(x, until=last) * dy)

    assert_gradients_close(central_differences(objective, model, x, dx, last))
    np.testing.assert_allclose(backend.to_numpy(dx), prefix_dx, rtol=1e-12, atol=1e-14)
    prefix_grads = {name: grad for name, _, grad in prefix.named_parameters()}
    for name, _, grad in model.named_parameters():
        if int(name.split(".")[0]) > last:
            assert np.all(backend.to_numpy(grad) == 7.0), name
        else:
            np.testing.assert_allclose(backend.to_numpy(grad), backend.to_numpy(prefix_grads[name]),
                                       rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("training", [True, False])
def test_two_backward_calls_on_one_forward_add_up(backend, training):
    """After one forward, backward from the top then from layer 5 (accumulating) gives the
    gradients of sum(model(x) * dy_top) + sum(layer 5's output * dy_5): no layer's backward
    disturbs its forward cache."""
    model = every_layer_model(backend).train(training)
    x = backend.standard_normal((3, 4, 4, 2))
    dy_top, dy_mid = backend.standard_normal((3, 1)), backend.standard_normal((3, *model.shapes[6]))
    model.zero_grad()
    model.forward(x)
    dx = model.backward(dy_top) + model.backward(dy_mid, from_layer=5)

    def objective():
        xp = backend.xp
        top = xp.sum(model.forward(x) * dy_top)
        return top + xp.sum(model.forward(x, until=5) * dy_mid)

    assert_gradients_close(central_differences(objective, model, x, dx))


@pytest.mark.parametrize("training", [True, False])
def test_no_layer_backward_changes_its_forward_cache(backend, training):
    """Every layer kind of layers.py, conv.py and norm.py: each backward mode leaves every
    array the forward cached unchanged, so repeated backward calls give the same result."""
    model = every_layer_model(backend).train(training)
    kinds = {type(layer) for layer in model.layers}
    defined = {cls for cls in mg.layers.LAYER_TYPES.values() if not cls.__name__.startswith("_")
               and cls.__module__ in ("minigan.layers", "minigan.conv", "minigan.norm")}
    assert kinds == defined, defined - kinds
    x = backend.standard_normal((3, 4, 4, 2))
    inputs = [x]
    for layer in model.layers:
        inputs.append(layer.forward(inputs[-1]))
    for layer, layer_input, output in zip(model.layers, inputs, inputs[1:]):
        views = {name for name, _ in layer.param_shapes().items()} | {"d" + n for n in layer.param_shapes()}
        cached = {name: backend.to_numpy(value).copy() for name, value in vars(layer).items()
                  if hasattr(value, "shape") and not isinstance(value, ModuleType) and name not in views}
        dy = backend.standard_normal(output.shape)
        first = None
        for grads in ("add", "write", "skip", "add"):
            for input_grad in (True, False):
                dx = layer.backward(dy, grads=grads, input_grad=input_grad)
                if input_grad:
                    first = backend.to_numpy(dx).copy() if first is None else first
                    np.testing.assert_array_equal(backend.to_numpy(dx), first)
        for name, before in cached.items():
            np.testing.assert_array_equal(backend.to_numpy(getattr(layer, name)), before,
                                          err_msg=f"{layer!r}.{name}")


def test_bad_layer_indices_are_refused(backend):
    model = make_mlp(backend)  # 5 layers
    x, dy = backend.standard_normal((2, 4)), backend.standard_normal((2, 8))
    for index in (5, -6, 1.0, True, "1"):
        with pytest.raises(ValueError, match=r"a layer index must be an int in \[-5, 4\] \(the model has 5 layers\)"):
            model.forward(x, until=index)
        with pytest.raises(ValueError, match=r"a layer index must be an int in \[-5, 4\]"):
            model.backward(dy, from_layer=index)
    assert model.layer_index(np.int64(-5)) == 0 and model.layer_index(4) == 4
