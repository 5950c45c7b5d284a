"""BatchNorm: gradients against central differences (float64) in both modes, forward,
gradients and running statistics against PyTorch, modes and buffers inside Sequential,
dtypes and errors, and the data-parallel `reduce_sums` hook."""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigan as mg
from minigan.gradcheck import assert_gradients_close, check_model
from minigan.norm import BatchNorm

# `backend_name` is a plain string, so sharing it across Hypothesis examples is safe.
EVERY_BACKEND = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
MODES = pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])


def shapes(batch=st.integers(2, 6)):
    """(N, C) or channels-last (N, H, W, C) with small sizes."""
    size = st.integers(1, 4)
    return st.one_of(st.tuples(batch, size), st.tuples(batch, size, size, size))


def bn_model(backend, shape, **kwargs):
    """A Sequential holding one BatchNorm for inputs of `shape` (batch axis included)."""
    return mg.Sequential([BatchNorm(shape[-1], **kwargs)], backend=backend, input_shape=shape[1:])


def randomise(bn, seed):
    """Sets gamma (either sign), beta and the running statistics to non-trivial values."""
    rng = np.random.default_rng(seed)
    size = bn.num_features
    values = {"gamma": rng.uniform(0.5, 2.0, size) * rng.choice([-1.0, 1.0], size),
              "beta": rng.standard_normal(size), "running_mean": rng.standard_normal(size),
              "running_var": rng.uniform(0.5, 2.0, size)}
    for name, value in values.items():
        getattr(bn, name)[...] = bn.backend.asarray(value)
    return values


def assert_close(actual, expected, rtol, scale=None):
    """Every entry within rtol of `scale`, by default the largest |expected| entry: entries
    that are zero in exact arithmetic cannot be compared relatively."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = np.abs(expected).max(initial=1e-300) if scale is None else scale
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def dx_scale(bn, dy):
    """The size of the terms whose difference dx is, max |gamma * inv_std * dy|: with two
    values per channel x_hat is +-1 up to eps and dx nearly cancels to zero."""
    host = bn.backend.to_numpy
    return float(np.abs(host(bn.gamma * bn.inv_std)).max() * np.abs(host(dy)).max())


@MODES
@given(shape=shapes(), seed=st.integers(0, 2**16))
@EVERY_BACKEND
def test_gradients(backend_name, training, shape, seed):
    be = mg.get_backend(backend_name, dtype="float64", seed=seed)
    model = bn_model(be, shape)
    randomise(model.layers[0], seed)
    model.train(training)
    # In training mode every perturbed forward also updates the running statistics, but the
    # training-mode output never reads them, so the checked function stays the same.
    x = be.asarray(np.random.default_rng(seed + 1).normal(0.5, 2.0, shape))
    assert_gradients_close(check_model(model, x))


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="the PyTorch comparisons need torch")


def torch_batchnorm(torch, shape, momentum, values):
    """torch's BatchNorm1d (N, C) or BatchNorm2d (NCHW) in float64 with our values."""
    kind = torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d
    layer = kind(shape[-1], momentum=momentum, dtype=torch.float64)
    with torch.no_grad():
        for name, target in [("gamma", layer.weight), ("beta", layer.bias),
                             ("running_mean", layer.running_mean), ("running_var", layer.running_var)]:
            target.copy_(torch.from_numpy(values[name]))
    return layer


def to_torch(torch, x):
    """Our channels-last array as torch's channels-first tensor (NHWC -> NCHW)."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


def from_torch(tensor):
    """torch's channels-first tensor as our channels-last array (NCHW -> NHWC)."""
    return np.moveaxis(tensor.detach().numpy(), 1, -1)


@MODES
@given(shape=shapes(), seed=st.integers(0, 2**16))
@EVERY_BACKEND
def test_forward_and_gradients_match_torch(torch, backend_name, training, shape, seed):
    be = mg.get_backend(backend_name, dtype="float64", seed=seed)
    model = bn_model(be, shape)
    bn = model.layers[0]
    values = randomise(bn, seed)
    reference = torch_batchnorm(torch, shape, 0.1, values).train(training)
    model.train(training)
    rng = np.random.default_rng(seed + 1)
    x, dy = rng.normal(0.5, 2.0, shape), rng.standard_normal(shape)

    y = be.to_numpy(model.forward(be.asarray(x)))
    dx = be.to_numpy(model.backward(be.asarray(dy)))
    x_torch = to_torch(torch, x).requires_grad_()
    y_torch = reference(x_torch)
    y_torch.backward(to_torch(torch, dy))

    assert_close(y, from_torch(y_torch), 1e-10)
    assert_close(dx, from_torch(x_torch.grad), 1e-10, dx_scale(bn, dy))
    assert_close(be.to_numpy(bn.dgamma), reference.weight.grad.numpy(), 1e-10)
    assert_close(be.to_numpy(bn.dbeta), reference.bias.grad.numpy(), 1e-10)


@given(shape=shapes(), momentum=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
@EVERY_BACKEND
def test_running_statistics_match_torch(torch, backend_name, shape, momentum, seed):
    be = mg.get_backend(backend_name, dtype="float64", seed=seed)
    model = bn_model(be, shape, momentum=momentum)
    bn = model.layers[0]
    reference = torch_batchnorm(torch, shape, momentum, randomise(bn, seed))
    rng = np.random.default_rng(seed + 1)
    for _ in range(3):
        x = rng.normal(rng.normal(), rng.uniform(0.1, 3.0), shape)
        model.forward(be.asarray(x))
        with torch.no_grad():
            reference(to_torch(torch, x))
    assert_close(be.to_numpy(bn.running_mean), reference.running_mean.numpy(), 1e-12)
    assert_close(be.to_numpy(bn.running_var), reference.running_var.numpy(), 1e-12)


def test_running_statistics_and_eval_by_formula(backend):
    model = bn_model(backend, (5, 3, 2, 4), momentum=0.3)
    bn = model.layers[0]
    values = randomise(bn, 7)
    x = np.random.default_rng(8).normal(1.0, 2.0, (5, 3, 2, 4))
    model.forward(backend.asarray(x))
    per_channel = x.reshape(-1, 4)  # (30, 4)
    np.testing.assert_allclose(backend.to_numpy(bn.running_mean),
                               0.7 * values["running_mean"] + 0.3 * per_channel.mean(axis=0), rtol=1e-13)
    unbiased = per_channel.var(axis=0, ddof=1)  # n / (n - 1) * biased
    np.testing.assert_allclose(backend.to_numpy(bn.running_var),
                               0.7 * values["running_var"] + 0.3 * unbiased, rtol=1e-13)

    running = backend.to_numpy(model.buffers).copy()
    model.eval()
    y = backend.to_numpy(model.forward(backend.asarray(x)))
    mean, var = running[:4], running[4:]
    expected = (x - mean) / np.sqrt(var + 1e-5) * values["gamma"] + values["beta"]
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    assert np.array_equal(backend.to_numpy(model.buffers), running)  # eval never updates them


def test_modes_switch_through_sequential(backend):
    model = mg.Sequential([mg.Dense(3, 4), BatchNorm(4), mg.ReLU()], backend=backend)
    bn = model.layers[1]
    x = backend.standard_normal((6, 3))
    assert bn.training and not bn.rows_independent and not model.rows_independent
    whole, part = backend.to_numpy(model.forward(x))[:3], backend.to_numpy(model.forward(x[:3]))
    assert not np.allclose(whole, part)
    model.eval()
    assert not bn.training and bn.rows_independent and model.rows_independent
    np.testing.assert_allclose(backend.to_numpy(model.forward(x))[:3],
                               backend.to_numpy(model.forward(x[:3])), rtol=1e-14)
    model.train()
    assert bn.training and not model.rows_independent


def test_buffers_are_saved_but_never_trained(backend):
    model = mg.Sequential([mg.Dense(3, 4), BatchNorm(4)], backend=backend)
    state = model.state_dict()
    assert np.array_equal(state["1.running_mean"], np.zeros(4))
    assert np.array_equal(state["1.running_var"], np.ones(4))
    assert [name for name, _ in model.named_buffers()] == ["1.running_mean", "1.running_var"]
    assert [name for name, _, _ in model.named_parameters()] == ["0.W", "0.b", "1.gamma", "1.beta"]

    optimizer = mg.Adam(model, lr=0.1)
    y = model.forward(backend.standard_normal((8, 3)))
    model.backward(backend.standard_normal(y.shape))
    buffers, params = backend.to_numpy(model.buffers).copy(), backend.to_numpy(model.params).copy()
    assert not np.array_equal(buffers[:4], np.zeros(4))  # the forward pass updated them
    optimizer.step()
    assert np.array_equal(backend.to_numpy(model.buffers), buffers)
    assert not np.array_equal(backend.to_numpy(model.params), params)

    restored = mg.Sequential.from_config(model.config(), backend=backend)
    restored.load_state_dict(model.state_dict())
    assert np.array_equal(backend.to_numpy(restored.buffers), buffers)


@MODES
def test_gradient_modes_follow_dense(backend, training):
    model = bn_model(backend, (4, 2, 2, 3))
    bn = model.layers[0]
    randomise(bn, 3)
    model.train(training)
    x, dy = backend.standard_normal((4, 2, 2, 3)), backend.standard_normal((4, 2, 2, 3))
    model.forward(x)
    dx = backend.to_numpy(bn.backward(dy, grads="write"))
    once = backend.to_numpy(model.grads).copy()
    assert np.array_equal(backend.to_numpy(bn.backward(dy, grads="add")), dx)
    np.testing.assert_allclose(backend.to_numpy(model.grads), 2 * once, rtol=1e-15)
    bn.backward(dy, grads="write")
    assert np.array_equal(backend.to_numpy(model.grads), once)
    assert np.array_equal(backend.to_numpy(bn.backward(dy, grads="skip")), dx)
    assert bn.backward(dy, grads="skip", input_grad=False) is None
    assert np.array_equal(backend.to_numpy(model.grads), once)
    assert bn.backward(dy, grads="add", input_grad=False) is None
    np.testing.assert_allclose(backend.to_numpy(model.grads), 2 * once, rtol=1e-15)


@MODES
def test_float32_stays_float32(backend32, training):
    model = bn_model(backend32, (4, 3, 3, 5)).train(training)
    y = model.forward(backend32.standard_normal((4, 3, 3, 5)))
    assert y.dtype == np.float32
    assert model.backward(backend32.standard_normal(y.shape)).dtype == np.float32
    assert model.grads.dtype == model.buffers.dtype == np.float32


@pytest.mark.parametrize("arguments, words", [
    ((0,), "num_features must be a positive integer"),
    ((2.5,), "num_features must be a positive integer"),
    ((4, -0.1), r"momentum must be in \[0, 1\]"),
    ((4, 1.5), r"momentum must be in \[0, 1\]"),
    ((4, "fast"), "momentum must be a number"),
    ((4, 0.1, 0.0), "eps must be a positive finite number"),
    ((4, 0.1, float("nan")), "eps must be a positive finite number"),
    ((4, 0.1, 1e-5, "zeros"), r"init must be one of \('ones', 'normal'\)"),
])
def test_bad_arguments(arguments, words):
    with pytest.raises(ValueError, match=words):
        BatchNorm(*arguments)


def test_wrong_channel_count_and_single_values_are_clear_errors(backend):
    with pytest.raises(ValueError, match=r"cannot take input shape \(4, 4, 2\): expects channels last, "
                                         r"i.e. input shape \(\.\.\., 3\)"):
        mg.Sequential([BatchNorm(3)], backend=backend, input_shape=(4, 4, 2))
    model = bn_model(backend, (1, 3))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, \.\.\., 3\), got \(2, 4\)"):
        model.layers[0].forward(backend.standard_normal((2, 4)))
    with pytest.raises(ValueError, match="needs more than 1 value per channel"):
        model.forward(backend.standard_normal((1, 3)))
    model.eval().forward(backend.standard_normal((1, 3)))  # the running statistics need no batch
    bn_model(backend, (1, 2, 2, 3)).forward(backend.standard_normal((1, 2, 2, 3)))  # 4 values each


def test_initialisation_config_and_export():
    model = bn_model(mg.get_backend("numpy", dtype="float64", seed=1), (2, 20000), init="normal")
    gamma = model.layers[0].gamma
    assert abs(gamma.mean() - 1) < 1e-3 and abs(gamma.std() / 0.02 - 1) < 0.03
    again = bn_model(mg.get_backend("numpy", dtype="float64", seed=1), (2, 20000), init="normal")
    assert np.array_equal(again.layers[0].gamma, gamma)
    assert np.array_equal(bn_model(mg.get_backend("numpy"), (2, 3)).params, [1, 1, 1, 0, 0, 0])
    bn = BatchNorm(8, momentum=0.2, eps=1e-3, init="normal")
    assert bn.config() == {"type": "BatchNorm", "num_features": 8, "momentum": 0.2, "eps": 1e-3,
                           "init": "normal"}
    assert mg.layers.layer_from_config(bn.config()).config() == bn.config()
    assert repr(bn) == "BatchNorm(num_features=8, momentum=0.2, eps=0.001, init='normal')"
    assert mg.BatchNorm is BatchNorm


def run_pass(model, x, dy):
    """One training forward and backward; host copies of y, dx, the gradients and buffers."""
    host = model.backend.to_numpy
    y = model.forward(x)
    model.zero_grad()
    dx = model.backward(dy)
    return host(y), host(dx), host(model.grads).copy(), host(model.buffers).copy()


@given(shape=shapes(batch=st.integers(1, 5)), seed=st.integers(0, 2**16))
@EVERY_BACKEND
def test_reduce_sums_as_if_a_second_rank_held_the_same_batch(backend_name, shape, seed):
    be = mg.get_backend(backend_name, dtype="float64", seed=seed)
    synced, plain = bn_model(be, shape), bn_model(be, (2 * shape[0],) + shape[1:])
    randomise(synced.layers[0], seed), randomise(plain.layers[0], seed)
    calls = []
    synced.layers[0].reduce_sums = lambda sums: calls.append(sums.shape) or 2 * sums
    rng = np.random.default_rng(seed + 1)
    x, dy = rng.normal(0.5, 2.0, shape), rng.standard_normal(shape)

    y, dx, grads, buffers = run_pass(synced, be.asarray(x), be.asarray(dy))
    channels = shape[-1]
    assert calls == [(2, channels), (1, channels), (2, channels)]  # one call per pass
    y2, dx2, grads2, buffers2 = run_pass(plain, be.asarray(np.concatenate([x, x])),
                                         be.asarray(np.concatenate([dy, dy])))
    assert_close(y, y2[:shape[0]], 1e-12)
    assert_close(dx, dx2[:shape[0]], 1e-12, dx_scale(plain.layers[0], dy))
    assert_close(buffers, buffers2, 1e-12)  # unbiased with the global count 2M
    # Parameter gradients stay local sums: the model's gradient all-reduce adds the ranks'.
    assert_close(2 * grads, grads2, 1e-12)


class ThreadAllReduce:
    """An all-reduce (sum) between threads standing in for processes."""

    def __init__(self, size):
        self.barrier = threading.Barrier(size, timeout=60)
        self.slots = [None] * size

    def reducer(self, rank):
        def reduce_sums(sums):
            self.slots[rank] = sums.copy()
            self.barrier.wait()
            total = sum(self.slots[1:], self.slots[0])  # the same order on every rank
            self.barrier.wait()  # every rank has read the slots before they are reused
            return total
        return reduce_sums


@pytest.mark.parametrize("sizes, image", [((3, 5), (2, 3)), ((1, 4), ()), ((1, 1), ())])
def test_two_ranks_compute_what_one_computes_on_the_concatenated_batch(backend, sizes, image):
    rng = np.random.default_rng(4)
    channels = 3
    xs = [rng.normal(0.5, 2.0, (size, *image, channels)) for size in sizes]
    dys = [rng.standard_normal(x.shape) for x in xs]
    ranks = [bn_model(backend, x.shape) for x in xs]
    plain = bn_model(backend, (sum(sizes), *image, channels))
    reduction = ThreadAllReduce(len(ranks))
    for rank, model in enumerate(ranks):
        randomise(model.layers[0], 9)
        model.layers[0].reduce_sums = reduction.reducer(rank)
    randomise(plain.layers[0], 9)
    with ThreadPoolExecutor(len(ranks)) as pool:
        futures = [pool.submit(run_pass, model, backend.asarray(x), backend.asarray(dy))
                   for model, x, dy in zip(ranks, xs, dys)]
        results = [future.result() for future in futures]
    y, dx, grads, buffers = run_pass(plain, backend.asarray(np.concatenate(xs)),
                                     backend.asarray(np.concatenate(dys)))
    split = np.cumsum(sizes)[:-1]
    for result, y_part, dx_part in zip(results, np.split(y, split), np.split(dx, split)):
        assert_close(result[0], y_part, 1e-12)
        assert_close(result[1], dx_part, 1e-12, dx_scale(plain.layers[0], np.concatenate(dys)))
        assert_close(result[3], buffers, 1e-12)
    assert_close(sum(result[2] for result in results), grads, 1e-12)
