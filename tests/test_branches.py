"""`Branches`: stacks of layers side by side on one input, outputs joined along the last axis.
Gradients by central differences (Hypothesis over shapes, both BatchNorm modes, every
backend), forward and gradients against PyTorch in float64, the gradient modes, the nested
parameters, buffers and modes, configs and checkpoints, and the errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan as mg
from minigan.gradcheck import assert_gradients_close, check_model

from conftest import BACKENDS
from test_dcgan import TorchDCGAN

EVERY_BACKEND = pytest.mark.parametrize("backend_name", BACKENDS)


def image_branches(channels, classes, mlp_width, kernel, batch_norm=True):
    """A convolutional branch (Conv, BatchNorm, LeakyReLU, Flatten, Dense) and an MLP branch
    (Flatten, Dense, Tanh, Dense), as a DCGAN discriminator with an MLP head has them."""
    size, out = 6, 3
    conv_out = (size + 2 - kernel) // 2 + 1
    convolutional = [mg.Conv2d(channels, out, kernel, stride=2, padding=1, init="normal"),
                     *([mg.BatchNorm(out)] if batch_norm else []), mg.LeakyReLU(0.2), mg.Flatten(),
                     mg.Dense(conv_out * conv_out * out, classes)]
    perceptron = [mg.Flatten(), mg.Dense(size * size * channels, mlp_width), mg.Tanh(), mg.Dense(mlp_width, 2)]
    return mg.Branches([convolutional, perceptron]), (size, size, channels)


def randomised(model, seed):
    """Every parameter N(0, 0.5): large enough that every layer matters."""
    model.params[...] = model.backend.asarray(np.random.default_rng(seed).normal(0, 0.5, model.params.shape))
    return model


@st.composite
def image_cases(draw):
    return dict(channels=draw(st.integers(1, 3)), classes=draw(st.integers(1, 3)),
                mlp_width=draw(st.integers(1, 5)), kernel=draw(st.integers(2, 4)),
                batch=draw(st.integers(2, 5)), seed=draw(st.integers(0, 2**16)))


@pytest.mark.parametrize("training", [True, False])
@given(case=image_cases())
@settings(max_examples=15, deadline=None)
@EVERY_BACKEND
def test_gradients(backend_name, training, case):
    be = mg.get_backend(backend_name, "float64", seed=case["seed"])
    layer, shape = image_branches(case["channels"], case["classes"], case["mlp_width"], case["kernel"])
    model = randomised(mg.Sequential([layer], backend=be, input_shape=shape), case["seed"])
    model.train(training)
    assert model.output_shape == (case["classes"] + 2,)
    x = be.asarray(np.random.default_rng(case["seed"] + 1).standard_normal((case["batch"], *shape)))
    assert_gradients_close(check_model(model, x))


@given(widths=st.lists(st.integers(1, 4), min_size=1, max_size=4), batch=st.integers(1, 4),
       seed=st.integers(0, 2**16))
@settings(max_examples=20, deadline=None)
@EVERY_BACKEND
def test_gradients_of_flat_branches_of_any_count_and_width(backend_name, widths, batch, seed):
    """One to four Dense stacks of any output width on (N, 3): the columns are theirs, in order."""
    be = mg.get_backend(backend_name, "float64", seed=seed)
    branches = [[mg.Dense(3, 4), mg.Tanh(), mg.Dense(4, width)] for width in widths]
    model = randomised(mg.Sequential([mg.Branches(branches)], backend=be), seed)
    assert model.output_shape == (sum(widths),)
    x = be.asarray(np.random.default_rng(seed + 1).standard_normal((batch, 3)))
    y, start = be.to_numpy(model.forward(x)), 0
    for branch, width in zip(branches, widths):
        h = x
        for inner in branch:
            h = inner.forward(h)
        np.testing.assert_array_equal(y[:, start:start + width], be.to_numpy(h))
        start += width
    assert_gradients_close(check_model(model, x))


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="the PyTorch comparisons need torch (pip install torch==2.13.0)")


@pytest.mark.parametrize("training", [True, False])
@given(case=image_cases())
@settings(max_examples=10, deadline=None)
@EVERY_BACKEND
def test_forward_and_gradients_match_torch(torch, backend_name, training, case):
    be = mg.get_backend(backend_name, "float64", seed=case["seed"])
    layer, shape = image_branches(case["channels"], case["classes"], case["mlp_width"], case["kernel"])
    model = randomised(mg.Sequential([layer], backend=be, input_shape=shape), case["seed"])
    bn = layer.branches[0][1]
    bn.running_mean[...] = be.asarray(np.linspace(-0.5, 0.5, bn.num_features))
    bn.running_var[...] = be.asarray(np.linspace(0.5, 2.0, bn.num_features))
    model.train(training)
    twin = TorchDCGAN.__new__(TorchDCGAN)  # only its layer translation: module() and run()
    twin.torch = torch
    host = mg.get_backend("numpy", "float64")
    copied = mg.Sequential.from_config(model.config(), backend=host)
    copied.params[...], copied.buffers[...] = be.to_numpy(model.params), be.to_numpy(model.buffers)
    modules = torch.nn.ModuleList([twin.module(inner) for inner in copied.layers])
    for inner, (name, value) in zip(modules[0][0][1].buffers(), (("mean", bn.running_mean), ("var", bn.running_var))):
        inner.copy_(torch.from_numpy(be.to_numpy(value)))
    modules.train(training)
    rng = np.random.default_rng(case["seed"] + 1)
    x, dy = rng.standard_normal((case["batch"], *shape)), rng.standard_normal((case["batch"], *model.output_shape))

    y = be.to_numpy(model.forward(be.asarray(x)))
    dx = be.to_numpy(model.backward(be.asarray(dy)))
    x_torch = torch.tensor(x, requires_grad=True)
    y_torch = twin.run(modules, copied.layers, x_torch)
    y_torch.backward(torch.from_numpy(dy))

    def close(actual, expected):
        # A saturated tanh makes some gradients ~1e-8 through 1 - tanh^2, which both sides round
        # at ~1e-16 absolute: below a scale of 1e-5 the tolerance stays at 1e-15 absolute.
        expected = np.asarray(expected)
        np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10 * max(np.abs(expected).max(initial=0), 1e-5))

    close(y, y_torch.detach().numpy())
    close(dx, x_torch.grad.numpy())
    mine = mg.Sequential.from_config(model.config(), backend=host)  # our gradients, in torch's layout
    mine.params[...] = be.to_numpy(model.grads)
    for (name, expected), ours in zip(modules.named_parameters(), torch.nn.ModuleList(
            [twin.module(inner) for inner in mine.layers]).parameters()):
        if name == "0.0.0.bias" and training:
            continue  # feeds BatchNorm in training mode: its gradient is rounding only
        close(ours.detach().numpy(), expected.grad.numpy())


@EVERY_BACKEND
@pytest.mark.parametrize("grads", ["add", "write", "skip"])
def test_gradient_modes_and_input_grad_follow_dense(backend_name, grads):
    """The branches' parameters obey "add", "write" and "skip" as a plain Dense does, and
    input_grad=False returns None."""
    be = mg.get_backend(backend_name, "float64", seed=0)
    model = mg.Sequential([mg.Branches([[mg.Dense(3, 2)], [mg.Dense(3, 4), mg.ReLU(), mg.Dense(4, 1)]])], backend=be)
    x, dy = be.asarray(np.ones((2, 3))), be.asarray(np.ones((2, 3)))
    model.forward(x)
    model.grads[...] = 1.0
    assert model.layers[0].backward(dy, grads=grads, input_grad=False) is None
    fresh = mg.Sequential([mg.Branches([[mg.Dense(3, 2)], [mg.Dense(3, 4), mg.ReLU(), mg.Dense(4, 1)]])], backend=be)
    fresh.params[...] = model.params
    fresh.forward(x)
    fresh.backward(dy, accumulate=False)
    expected = {"add": fresh.grads + 1.0, "write": fresh.grads, "skip": be.xp.ones_like(fresh.grads)}[grads]
    np.testing.assert_allclose(be.to_numpy(model.grads), be.to_numpy(expected), rtol=1e-14)


def test_nested_parameters_buffers_and_modes():
    be = mg.get_backend("numpy", "float64", seed=0)
    layer, shape = image_branches(2, 1, 3, 4)
    model = mg.Sequential([mg.Dense(4, 72), mg.Reshape(shape), layer], backend=be)
    assert [name for name, _, _ in model.named_parameters()][2:] == [
        "2.0.0.W", "2.0.0.b", "2.0.1.gamma", "2.0.1.beta", "2.0.4.W", "2.0.4.b", "2.1.1.W", "2.1.1.b",
        "2.1.3.W", "2.1.3.b"]
    assert [name for name, _ in model.named_buffers()] == ["2.0.1.running_mean", "2.0.1.running_var"]
    bn = layer.branches[0][1]
    assert np.shares_memory(bn.gamma, model.params) and np.shares_memory(bn.running_var, model.buffers)
    assert float(bn.gamma.mean()) == 1.0 and bn.running_var.tolist() == [1.0, 1.0, 1.0]  # reset on attach
    assert bn in list(model.walk_layers()) and not model.rows_independent
    model.eval()
    assert not bn.training and not layer.training
    model.train()
    assert bn.training
    plain = mg.Sequential([mg.Branches([[mg.Dense(3, 1)], [mg.Dense(3, 1)]])], backend=be)
    assert plain.rows_independent and plain.input_shape == (3,)


def test_config_rebuilds_the_layer_and_checkpoints_keep_every_array(tmp_path):
    from minigan.checkpoint import load_checkpoint, save_checkpoint
    be = mg.get_backend("numpy", "float32", seed=0)
    G = mg.Sequential([mg.Dense(2, 36), mg.Tanh(), mg.Reshape((6, 6, 1))], backend=be)
    layer, shape = image_branches(1, 1, 4, 3)
    gan = mg.GAN(G, mg.Sequential([layer], backend=be, input_shape=shape))
    gan.train_step(np.random.default_rng(0).uniform(-1, 1, (4, *shape)).astype(np.float32))
    rebuilt = mg.Sequential.from_config(gan.discriminator.config(), backend=be)
    assert rebuilt.config() == gan.discriminator.config() and rebuilt.num_params == gan.discriminator.num_params
    save_checkpoint(tmp_path / "run.npz", gan)
    loaded, _ = load_checkpoint(tmp_path / "run.npz")
    state, expected = loaded.discriminator.state_dict(), gan.discriminator.state_dict()
    assert state.keys() == expected.keys() and "0.0.1.running_var" in state
    assert all(np.array_equal(state[name], expected[name]) for name in expected)


@pytest.mark.parametrize("branches, words", [
    ([], "non-empty list of branches"),
    ([[]], "branch 0 must be a non-empty list of layers"),
    ([[mg.Dense(3, 1)], mg.Dense(3, 1)], "branch 1 must be a non-empty list"),
    ([[mg.Dense(3, 1)], ["Dense"]], "every branch entry must be a minigan layer"),
    ([[{"type": "Nonsense"}]], "unknown layer type 'Nonsense'"),
])
def test_bad_branches_are_refused(branches, words):
    with pytest.raises(ValueError, match=words):
        mg.Branches(branches)


def test_the_same_layer_twice_and_unjoinable_outputs_are_refused():
    be = mg.get_backend("numpy", "float64", seed=0)
    dense = mg.Dense(3, 1)
    with pytest.raises(ValueError, match="the same layer object appears twice"):
        mg.Branches([[dense], [dense]])
    with pytest.raises(ValueError, match=r"outputs \[\(2, 3\), \(4,\)\] differ on an axis other than the last"):
        mg.Sequential([mg.Branches([[mg.Dense(3, 6), mg.Reshape((2, 3))], [mg.Dense(3, 4)]])], backend=be)
    with pytest.raises(ValueError, match=r"layer 0 \(Branches.*branch 1: layer 0 \(Dense.*cannot take input shape \(3,\)"):
        mg.Sequential([mg.Branches([[mg.Dense(3, 1)], [mg.Dense(5, 1)]])], backend=be, input_shape=(3,))
    with pytest.raises(ValueError, match="give Sequential an input_shape"):
        mg.Sequential([mg.Branches([[mg.Dense(3, 1)], [mg.Flatten(), mg.Dense(3, 1)]])], backend=be)
