"""Compiled CPU passes (minigan.cpu_kernels): every layer that uses them gives the same bits
with them as with its NumPy code (forward, backward, every gradient mode; a whole DCGAN
step), and each loop, run as plain Python on small arrays, gives the bits of the NumPy code
it replaces, so the loops are checked even where Numba is not installed."""
import importlib.util

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigan as mg
from minigan import cpu_kernels
from minigan.conv import Conv2d, ConvTranspose2d
from minigan.im2col import add_windows_by_position, add_windows_by_tile_class, window_count
from minigan.run.presets import PRESETS, build_gan

from conftest import conv_geometries, output_padding_for

needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                 reason="needs Numba (pip install 'minigan[fast]'); CI installs it")
DTYPES = ["float32", "float64"]
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30]


def bits(array):
    """The array's bytes as unsigned integers: equal bits, signed zeros and NaNs included."""
    array = np.ascontiguousarray(array)
    return array.view({4: np.uint32, 8: np.uint64}[array.dtype.itemsize])


def assert_same_bits(left, right):
    assert left.shape == right.shape and left.dtype == right.dtype
    assert np.array_equal(bits(left), bits(right))


def with_specials(rng, shape, dtype):
    """Normal draws with some zeros of both signs, infinities and NaNs among them."""
    values = rng.standard_normal(shape).astype(dtype)
    flat = values.reshape(-1)
    where = rng.choice(flat.size, size=min(flat.size, len(SPECIAL)), replace=False)
    flat[where] = np.array(SPECIAL[: len(where)], dtype=dtype)
    return values


def backend(dtype, compiled, seed=0):
    be = mg.get_backend("numpy", dtype, seed=seed)
    be.compiled = compiled
    return be


def run_both(make, input_shape, dtype, seed, training=True):
    """The model `make()` built twice (NumPy code, compiled passes), forward and backward in
    every gradient mode on the same data: the outputs, gradients and buffers of each."""
    results = []
    for compiled in (False, True):
        model = mg.Sequential(make(), backend=backend(dtype, compiled, seed), input_shape=input_shape)
        model.train(training)
        rng = np.random.default_rng(seed)
        x = model.backend.asarray(rng.standard_normal((3, *input_shape)))
        dy = model.backend.asarray(rng.standard_normal((3, *model.output_shape)))
        y = model.forward(x)
        dx = model.backward(dy, accumulate=False)  # gradients written
        model.backward(dy)                         # added
        dx_only = model.backward(dy, param_grads=False)
        model.forward(x)
        model.backward(dy, input_grad=False)
        results.append([y, dx, dx_only, model.grads.copy(), model.buffers.copy()])
    return results


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@given(channels=st.integers(1, 6), spatial=st.sampled_from([(), (3,), (2, 3)]), seed=st.integers(0, 2**16),
       training=st.booleans())
def test_batchnorm_gives_the_same_bits_compiled(dtype, channels, spatial, seed, training):
    """Training mode (and eval, which has no compiled pass) over (N, C) and (N, ..., C)."""
    numpy_path, compiled_path = run_both(lambda: [mg.BatchNorm(channels)], (*spatial, channels), dtype, seed,
                                         training)
    for left, right in zip(numpy_path, compiled_path):
        assert_same_bits(left, right)


@needs_numba
def test_batchnorm_with_a_reduction_hook_gives_the_same_bits_compiled():
    """The sums pass through `reduce_sums` between the compiled passes as between NumPy's."""
    outputs = []
    for compiled in (False, True):
        model = mg.Sequential([mg.BatchNorm(5)], backend=backend("float64", compiled), input_shape=(2, 2, 5))
        model.layers[0].reduce_sums = lambda sums: 2 * sums  # as if a second rank held the same batch
        x = model.backend.standard_normal((4, 2, 2, 5))
        outputs.append((model.forward(x), model.backward(x), model.grads.copy(), model.buffers.copy()))
    for left, right in zip(*outputs):
        assert_same_bits(left, right)


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@given(slope=st.floats(0.0, 0.99), shape=st.sampled_from([(7,), (3, 4), (2, 3, 5)]), seed=st.integers(0, 2**16))
def test_activations_give_the_same_bits_compiled_special_values_included(dtype, slope, shape, seed):
    outputs = []
    for compiled in (False, True):
        be = backend(dtype, compiled)
        rng = np.random.default_rng(seed)
        x, dy = with_specials(rng, (4, *shape), dtype), with_specials(rng, (4, *shape), dtype)
        leaky, relu = mg.LeakyReLU(slope), mg.ReLU()
        for layer in (leaky, relu):
            layer.attach(be, {}, {}, {})
        with np.errstate(invalid="ignore"):
            outputs.append((leaky.forward(x), leaky.backward(dy), relu.forward(x), relu.backward(dy)))
    for left, right in zip(*outputs):
        assert_same_bits(left, right)


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@given(geometry=conv_geometries(), seed=st.integers(0, 2**16))
def test_convolutions_give_the_same_bits_compiled(dtype, geometry, seed):
    """Both convolutions (their scatter of windows is compiled), one channel and several,
    the transposed one as the adjoint of the other (its padding and output padding too)."""
    kernel, stride, padding, c_in, c_out, height, width = geometry
    extra = output_padding_for(height, width, kernel, stride, padding)
    conv_out = Conv2d(c_in, c_out, kernel, stride, padding).output_shape((height, width, c_in))
    for make, shape in ((lambda: [Conv2d(c_in, c_out, kernel, stride, padding)], (height, width, c_in)),
                        (lambda: [ConvTranspose2d(c_out, c_in, kernel, stride, padding, extra)], conv_out)):
        numpy_path, compiled_path = run_both(make, shape, dtype, seed)
        for left, right in zip(numpy_path, compiled_path):
            assert_same_bits(left, right)


@needs_numba
@pytest.mark.parametrize("preset", ["dcgan-paper", "dcgan"])
def test_a_dcgan_step_gives_the_same_bits_compiled(preset):
    """Three float32 training steps of a DCGAN preset: parameters, optimizer-visible
    buffers and statistics equal bit for bit."""
    states = []
    for compiled in (False, True):
        gan = build_gan(PRESETS[preset], (28, 28, 1), backend("float32", compiled))
        real = gan.backend.asarray(np.random.default_rng(1).uniform(-1, 1, (8, 28, 28, 1)))
        stats = [gan.train_step(real) for _ in range(3)]
        states.append(([model.params.copy() for model in gan.models.values()] +
                       [model.buffers.copy() for model in gan.models.values()], stats))
    for left, right in zip(states[0][0], states[1][0]):
        assert_same_bits(left, right)
    assert states[0][1] == states[1][1]


# ---- the loops themselves, as plain Python on small arrays (no Numba needed)

@pytest.mark.parametrize("dtype", DTYPES)
@given(geometry=conv_geometries(), batch=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_the_col2im_loops_add_as_numpy_does(dtype, geometry, batch, seed):
    """Both orders of adding windows, onto a slice of a larger image that holds values."""
    (kh, kw), (sh, sw), (ph, pw), channels, _, height, width = geometry
    height, width = height + 2 * ph, width + 2 * pw                             # the padded image
    ho, wo = window_count(height, kh, sh), window_count(width, kw, sw)
    rng = np.random.default_rng(seed)
    cols = rng.standard_normal((batch, ho, wo, kh, kw, channels)).astype(dtype)
    start = rng.standard_normal((batch + 1, height + 1, width + 2, channels)).astype(dtype)
    for loop, numpy_order in ((cpu_kernels.col2im_by_tile_class, lambda out: add_windows_by_tile_class(
            np, cols, out, (sh, sw))), (cpu_kernels.col2im_by_position,
                                        lambda out: add_windows_by_position(cols, out, (sh, sw)))):
        expected, image = start.copy(), start.copy()
        numpy_order(expected[1:, 1:, 2:])
        loop.python(cols, image[1:], 1, 2, sh, sw)
        assert_same_bits(image, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@given(rows=st.integers(2, 9), channels=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_the_batchnorm_loops_compute_as_numpy_does(dtype, rows, channels, seed):
    """Each loop against the NumPy lines of `BatchNorm._forward_train` / `_backward_train`."""
    rng = np.random.default_rng(seed)
    x2, dy2 = (rng.standard_normal((rows, channels)).astype(dtype) * 3 + 1 for _ in range(2))
    gamma, beta = (rng.standard_normal(channels).astype(dtype) for _ in range(2))
    sums = np.empty(channels, dtype)
    cpu_kernels.batchnorm_channel_sums.python(x2, sums)
    assert_same_bits(sums, x2.sum(axis=0))
    mean = sums / rows
    x_hat, squares = np.empty_like(x2), np.empty(channels, dtype)
    cpu_kernels.batchnorm_centre.python(x2, mean, x_hat, squares)
    assert_same_bits(x_hat, x2 - mean)
    assert_same_bits(squares, np.einsum("ij,ij->j", x2 - mean, x2 - mean))
    inv_std = 1 / np.sqrt(squares / rows + 1e-5)
    y = np.empty_like(x2)
    cpu_kernels.batchnorm_normalise.python(x_hat, inv_std, gamma, beta, y)
    expected_x_hat = (x2 - mean) * inv_std
    assert_same_bits(x_hat, expected_x_hat)
    assert_same_bits(y, expected_x_hat * gamma + beta)
    gradient = np.empty((2, channels), dtype)
    cpu_kernels.batchnorm_gradient_sums.python(dy2, x_hat, gradient)
    assert_same_bits(gradient[0], dy2.sum(axis=0))
    assert_same_bits(gradient[1], np.einsum("ij,ij->j", dy2, x_hat))
    slope, shift, scale = gradient[1] / -rows, gradient[0] / rows, gamma * inv_std
    dx = np.empty_like(x2)
    cpu_kernels.batchnorm_input_gradient.python(x_hat, dy2, slope, shift, scale, dx)
    assert_same_bits(dx, ((x_hat * slope + dy2) - shift) * scale)


@pytest.mark.parametrize("dtype", DTYPES)
@given(slope=st.floats(0.0, 0.99), size=st.integers(1, 20), seed=st.integers(0, 2**16))
def test_the_activation_loops_compute_as_numpy_does(dtype, slope, size, seed):
    rng = np.random.default_rng(seed)
    x, dy = with_specials(rng, (size,), dtype), with_specials(rng, (size,), dtype)
    scalar = np.dtype(dtype).type
    y, derivative, dx = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    with np.errstate(invalid="ignore"):
        cpu_kernels.leaky_relu_forward.python(x, scalar(slope), scalar(1.0 - slope), scalar(0), y, derivative)
        expected = x * slope
        np.maximum(x, expected, out=expected)
        expected_derivative = np.multiply(x > 0, 1.0 - slope, dtype=x.dtype) + slope
        cpu_kernels.relu_backward.python(dy, x, scalar(0), dx)
        expected_dx = dy * (x > 0)
    assert_same_bits(y, expected)
    assert_same_bits(derivative, expected_derivative)
    assert_same_bits(dx, expected_dx)


# ---- when the compiled passes are used

def test_the_backend_says_whether_the_passes_are_compiled(monkeypatch):
    monkeypatch.setenv(cpu_kernels.COMPILED_VARIABLE, "0")
    cpu_kernels.available.cache_clear()
    try:
        assert not cpu_kernels.available() and not mg.get_backend("numpy").compiled
        monkeypatch.delenv(cpu_kernels.COMPILED_VARIABLE)
        cpu_kernels.available.cache_clear()
        numba_installed = importlib.util.find_spec("numba") is not None
        assert cpu_kernels.available() == numba_installed
        assert mg.get_backend("numpy").compiled == numba_installed
        assert not mg.get_backend("strict_cupy").compiled  # only NumPy arrays
    finally:
        cpu_kernels.available.cache_clear()


@needs_numba
def test_a_loop_compiles_without_a_disk_cache_where_none_can_be_written(monkeypatch):
    """Numba refuses `cache=True` (RuntimeError) when it finds no writable place: the loop is
    then compiled without one."""
    import numba
    real_njit, asked = numba.njit, []

    def njit(*args, **options):
        if args or set(options) != {"cache"}:  # Numba's own calls while it compiles
            return real_njit(*args, **options)
        asked.append(options["cache"])
        if options["cache"]:
            raise RuntimeError("cannot cache function: no locator available")
        return real_njit(cache=False)

    monkeypatch.setattr(numba, "njit", njit)
    loop = cpu_kernels._compiled_at_first_call(cpu_kernels.batchnorm_channel_sums.python)
    sums = np.empty(2)
    loop(np.arange(6.0).reshape(3, 2), sums)
    loop(np.ones((2, 2)), sums)
    assert asked == [True, False] and sums.tolist() == [2.0, 2.0]
