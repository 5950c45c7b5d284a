"""Conv2d and ConvTranspose2d: gradients against central differences over random kernels,
strides, paddings, channels and sizes; the transposed convolution as the exact adjoint of
the convolution; PyTorch float64 as an independent oracle; shapes and clear errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigan as mg
from minigan.conv import Conv2d, ConvTranspose2d
from minigan.im2col import (Band, add_windows, add_windows_by_position, add_windows_by_tile_class, bands, gather,
                             sample_chunks, scatter_add, window_count)
from minigan.gradcheck import assert_gradients_close, check_model

from conftest import BACKENDS, conv_geometries, output_padding_for


def randomised(model, backend, seed):
    model.params[...] = backend.asarray(np.random.default_rng(seed).standard_normal(model.params.shape))
    return model


@pytest.mark.parametrize("backend_name", BACKENDS)
@given(geometry=conv_geometries(), batch=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_conv2d_gradients(backend_name, geometry, batch, seed):
    kernel, stride, padding, c_in, c_out, height, width = geometry
    be = mg.get_backend(backend_name, "float64", seed=seed)
    model = randomised(mg.Sequential([Conv2d(c_in, c_out, kernel, stride, padding)], backend=be,
                                     input_shape=(height, width, c_in)), be, seed)
    assert_gradients_close(check_model(model, be.standard_normal((batch, height, width, c_in)), seed=seed))


@pytest.mark.parametrize("backend_name", BACKENDS)
@given(geometry=conv_geometries(), batch=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_conv_transpose2d_gradients(backend_name, geometry, batch, seed):
    kernel, stride, padding, c_in, c_out, height, width = geometry
    extra = output_padding_for(height, width, kernel, stride, padding)
    layer = ConvTranspose2d(c_out, c_in, kernel, stride, padding, extra)
    conv_out = Conv2d(c_in, c_out, kernel, stride, padding).output_shape((height, width, c_in))
    be = mg.get_backend(backend_name, "float64", seed=seed)
    model = randomised(mg.Sequential([layer], backend=be, input_shape=conv_out), be, seed)
    assert model.output_shape == (height, width, c_in)
    assert_gradients_close(check_model(model, be.standard_normal((batch, *conv_out)), seed=seed))


@pytest.mark.parametrize("backend_name", BACKENDS)
@given(geometry=conv_geometries(), seed=st.integers(0, 2**16))
def test_the_transposed_convolution_is_the_adjoint(backend_name, geometry, seed):
    """<conv(x), y> == <x, conv_transpose(y)> with the weights W and W^T (channel axes
    swapped), no bias."""
    kernel, stride, padding, c_in, c_out, height, width = geometry
    be = mg.get_backend(backend_name, "float64", seed=seed)
    conv = mg.Sequential([Conv2d(c_in, c_out, kernel, stride, padding)], backend=be,
                         input_shape=(height, width, c_in))
    extra = output_padding_for(height, width, kernel, stride, padding)
    adjoint = mg.Sequential([ConvTranspose2d(c_out, c_in, kernel, stride, padding, extra)], backend=be,
                            input_shape=conv.output_shape)
    conv.layers[0].W[...] = be.standard_normal(conv.layers[0].W.shape)
    adjoint.layers[0].W[...] = conv.layers[0].W.transpose(0, 1, 3, 2)
    x = be.standard_normal((2, height, width, c_in))
    y = be.standard_normal((2, *conv.output_shape))
    left, right = float((conv.forward(x) * y).sum()), float((x * adjoint.forward(y)).sum())
    assert abs(left - right) <= 1e-12 * max(1.0, abs(left))


def windows_added_one_by_one(cols, padded_shape, kernel, stride):
    """col2im written as its definition: each row of cols added onto its window, in turn."""
    (kh, kw), (sh, sw) = kernel, stride
    n, hp, wp, c = padded_shape
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    image = np.zeros(padded_shape)
    rows = cols.reshape(n, ho, wo, kh, kw, c)
    for sample in range(n):
        for a in range(ho):
            for b in range(wo):
                image[sample, a * sh : a * sh + kh, b * sw : b * sw + kw] += rows[sample, a, b]
    return image


@pytest.mark.parametrize("backend_name", BACKENDS)
@given(geometry=conv_geometries(), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_add_windows_adds_every_row_onto_its_window(backend_name, geometry, batch, seed):
    """col2im (`add_windows`) against its definition, onto a slice of a larger image that
    already holds values (as the layers add chunks of samples and bands), leaving the rest
    alone; and both of its orders of adding (kernel position by position; disjoint windows
    a class at a time) for any number of channels."""
    kernel, stride, padding, channels, _, height, width = geometry
    be = mg.get_backend(backend_name, "float64", seed=seed)
    shape = (batch, height + 2 * padding[0], width + 2 * padding[1], channels)
    ho, wo = window_count(shape[1], kernel[0], stride[0]), window_count(shape[2], kernel[1], stride[1])
    rng = np.random.default_rng(seed)
    cols = rng.standard_normal((batch * ho * wo, kernel[0] * kernel[1] * channels))
    expected = windows_added_one_by_one(cols, shape, kernel, stride)
    windows = be.asarray(cols.reshape(batch, ho, wo, *kernel, channels))
    before = rng.standard_normal((batch + 2, *shape[1:]))
    larger = be.asarray(before.copy())                                     # asarray may not copy
    add_windows(be.xp, windows, larger[1 : batch + 1], stride)
    written = be.to_numpy(larger)
    assert np.allclose(written[1 : batch + 1], before[1 : batch + 1] + expected, rtol=1e-13, atol=1e-13)
    assert np.array_equal(written[0], before[0]) and np.array_equal(written[-1], before[-1])
    for add in (lambda out: add_windows_by_position(windows, out, stride),      # both orders,
                lambda out: add_windows_by_tile_class(be.xp, windows, out, stride)):  # any channels
        out = be.xp.zeros(shape)
        add(out)
        assert np.allclose(be.to_numpy(out), expected, rtol=1e-13, atol=1e-13)


def torch_conv(torch, layer, x, dy):
    """torch's output, input gradient and weight/bias gradients, in minigan's layouts."""
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    transposed = isinstance(layer, ConvTranspose2d)
    tw = torch.tensor(np.ascontiguousarray(layer.W.transpose((2, 3, 0, 1) if transposed else (3, 2, 0, 1))),
                      requires_grad=True)
    tb = torch.tensor(np.array(layer.b), requires_grad=True)
    if transposed:
        ty = torch.nn.functional.conv_transpose2d(tx, tw, tb, layer.stride, layer.padding, layer.output_padding)
    else:
        ty = torch.nn.functional.conv2d(tx, tw, tb, layer.stride, layer.padding)
    ty.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    back = (2, 3, 0, 1) if transposed else (2, 3, 1, 0)
    return (ty.detach().numpy().transpose(0, 2, 3, 1), tx.grad.numpy().transpose(0, 2, 3, 1),
            tw.grad.numpy().transpose(back), tb.grad.numpy())


def relative(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize("make, input_shape", [
    (lambda: Conv2d(1, 64, 4, 2, 1), (28, 28, 1)),                   # DCGAN's D, layer 1
    (lambda: Conv2d(6, 8, 4, 2, 1), (14, 14, 6)),
    (lambda: Conv2d(3, 5, (3, 5), (1, 2), (2, 0)), (7, 9, 3)),
    (lambda: ConvTranspose2d(12, 6, 4, 2, 1), (7, 7, 12)),           # DCGAN's G: 7 -> 14
    (lambda: ConvTranspose2d(6, 1, 4, 2, 1), (14, 14, 6)),           # 14 -> 28
    (lambda: ConvTranspose2d(3, 4, (3, 2), (3, 2), (1, 0), (2, 1)), (4, 5, 3)),
])
def test_against_pytorch_float64(make, input_shape):
    torch = pytest.importorskip("torch", reason="PyTorch is the independent oracle (pip install torch==2.13.0)")
    be = mg.get_backend("numpy", "float64", seed=0)
    layer = make()
    model = randomised(mg.Sequential([layer], backend=be, input_shape=input_shape), be, 1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, *input_shape))
    y = model.forward(x)
    dy = rng.standard_normal(y.shape)
    model.zero_grad()
    dx = model.backward(dy)
    expected = torch_conv(torch, layer, x, dy)
    for ours, theirs in zip((y, dx, layer.dW, layer.db), expected):
        assert ours.shape == theirs.shape and relative(ours, theirs) <= 1e-10


def test_shapes_and_configs():
    conv = Conv2d(1, 64, 4, stride=2, padding=1)
    assert conv.output_shape((28, 28, 1)) == (14, 14, 64)
    assert ConvTranspose2d(128, 64, 4, 2, 1).output_shape((7, 7, 128)) == (14, 14, 64)
    assert ConvTranspose2d(2, 3, 3, 2, 1, 1).output_shape((5, 5, 2)) == (10, 10, 3)
    assert conv.config() == {"type": "Conv2d", "in_channels": 1, "out_channels": 64, "kernel_size": [4, 4],
                             "stride": [2, 2], "padding": [1, 1], "init": "he"}
    model = mg.Sequential([conv, mg.LeakyReLU(0.2), ConvTranspose2d(64, 1, 4, 2, 1, init="normal")],
                          input_shape=(28, 28, 1))
    rebuilt = mg.Sequential.from_config(model.config())
    assert rebuilt.config() == model.config() and rebuilt.output_shape == (28, 28, 1)
    assert float(np.std(model.layers[2].W)) == pytest.approx(0.02, rel=0.2)


@pytest.mark.parametrize("layers, input_shape, words", [
    ([Conv2d(3, 4, 3)], (8, 8, 2), r"expects images \(H, W, 3\) \(channels last\)"),
    ([Conv2d(3, 4, 3)], (8, 3), r"expects images \(H, W, 3\)"),
    ([Conv2d(1, 4, 5, padding=1)], (2, 2, 1), r"kernel \(5, 5\) is larger than the padded input \(4, 4\)"),
    ([ConvTranspose2d(1, 1, 1, padding=1)], (1, 1, 1), "leaves no output"),
])
def test_shape_errors_name_the_layer_and_the_shapes(layers, input_shape, words):
    with pytest.raises(ValueError, match=words):
        mg.Sequential(layers, input_shape=input_shape)


@pytest.mark.parametrize("make, words", [
    (lambda: Conv2d(0, 4, 3), "in_channels must be a positive integer"),
    (lambda: Conv2d(1, 4, 0), "kernel_size must be an int or a pair of ints >= 1"),
    (lambda: Conv2d(1, 4, 3, stride=0), "stride must be an int or a pair of ints >= 1"),
    (lambda: Conv2d(1, 4, 3, padding=-1), "padding must be an int or a pair of ints >= 0"),
    (lambda: Conv2d(1, 4, (3, 3, 3)), "kernel_size must be an int or a pair"),
    (lambda: ConvTranspose2d(1, 4, 3, stride=2, output_padding=2), "output_padding .* smaller than the stride"),
    (lambda: Conv2d(1, 4, 3, init="kaiming"), "init must be one of"),
])
def test_bad_arguments(make, words):
    with pytest.raises(ValueError, match=words):
        make()


@pytest.mark.parametrize("make", [lambda: Conv2d(2, 3, 3, 2, 1), lambda: ConvTranspose2d(2, 3, 3, 2, 1, 1)])
def test_float32_stays_float32_and_buffers_are_reused(backend32, make):
    layer = make()
    model = mg.Sequential([layer], backend=backend32, input_shape=(6, 6, 2))
    x = backend32.standard_normal((4, 6, 6, 2))
    y = model.forward(x)
    dx = model.backward(backend32.standard_normal(y.shape))
    assert y.dtype == dx.dtype == model.grads.dtype == np.float32
    buffers = dict(layer._col_buffers)  # one per band
    assert len(buffers) == 4  # k3 s2 p1, 6x6 <-> 3x3: only the first row and column touch the padding
    model.forward(x)
    model.backward(backend32.standard_normal(y.shape))
    assert all(buffer.dtype == np.float32 for buffer in layer._col_buffers.values())
    assert all(layer._col_buffers[index] is buffer for index, buffer in buffers.items())  # not new arrays


@pytest.mark.parametrize("make, input_shape", [(lambda: Conv2d(1, 3, 4, 2, 1), (8, 8, 1)),
                                               (lambda: ConvTranspose2d(3, 1, 4, 2, 1), (4, 4, 3))])
def test_one_channel_images_are_padded_and_gathered_whole(make, input_shape):
    """With one channel on the image side the layer pads it and uses one band, a plain
    im2col: one column buffer, and the padded buffer kept with its border zero."""
    be = mg.get_backend("numpy", "float64", seed=0)
    layer = make()
    model = randomised(mg.Sequential([layer], backend=be, input_shape=input_shape), be, 1)
    x = be.standard_normal((2, *input_shape))
    y = model.forward(x)
    model.backward(be.standard_normal(y.shape))
    assert len(layer._col_buffers) == 1 and layer._padded_buffer.shape == (2, 10, 10, 1)
    padded = layer._padded_buffer
    model.forward(2 * x)
    model.backward(be.standard_normal(y.shape))
    assert layer._padded_buffer is padded
    border = np.ones((10, 10), dtype=bool)
    border[1:-1, 1:-1] = False
    assert not padded[:, border].any()


def test_the_transposed_convolution_keeps_one_column_buffer_for_chunks_of_unequal_sizes():
    be = mg.get_backend("numpy", "float64", seed=0)
    layer = ConvTranspose2d(2, 3, 3, 2, 1, 1)
    model = mg.Sequential([layer], backend=be, input_shape=(6, 6, 2))
    be.chunk_bytes = 2 * 6 * 6 * 9 * 3 * 8  # two samples' columns (H W kh kw out float64s): chunks 1, 2, 2
    x = be.standard_normal((5, 6, 6, 2))
    buffers = []
    for _ in range(2):
        model.forward(x)
        model.backward(be.standard_normal((5, *model.output_shape)))
        buffers.append(dict(layer._col_buffers))
    interior = max(buffers[0], key=lambda index: buffers[0][index].size)
    assert buffers[0][interior] is buffers[1][interior] and buffers[0][interior].shape[0] == 2


def test_the_dcgan_layers_bands_skip_every_padded_tap():
    """k4 s2 p1, 14x14 -> 7x7: the first and last output row and column lose one kernel row
    or column to the padding; 26 x 26 taps are left of 28 x 28."""
    found = bands((7, 7), (14, 14), (4, 4), (2, 2), (1, 1))
    runs = [((0, 1), (1, 4)), ((1, 6), (0, 4)), ((6, 7), (0, 3))]
    assert found == [Band(rows, cols, taps_h, taps_w, (2 * rows[0] + taps_h[0] - 1, 2 * cols[0] + taps_w[0] - 1))
                     for rows, taps_h in runs for cols, taps_w in runs]
    assert found[4] == Band((1, 6), (1, 6), (0, 4), (0, 4), (1, 1))  # the interior: the whole kernel
    assert sum(b.size[0] * b.size[1] * b.kernel[0] * b.kernel[1] for b in found) == 26 * 26


@given(geometry=conv_geometries())
def test_bands_hold_each_tap_inside_the_image_once(geometry):
    kernel, stride, padding, _, _, height, width = geometry
    outputs = Conv2d(1, 1, kernel, stride, padding).output_shape((height, width, 1))[:2]
    inside = {(h, w, i, j) for h in range(outputs[0]) for w in range(outputs[1])
              for i in range(kernel[0]) for j in range(kernel[1])
              if 0 <= h * stride[0] + i - padding[0] < height and 0 <= w * stride[1] + j - padding[1] < width}
    held = [(h, w, i, j) for band in bands(outputs, (height, width), kernel, stride, padding)
            for h in range(*band.rows) for w in range(*band.cols)
            for i in range(*band.kernel_rows) for j in range(*band.kernel_cols)]
    assert len(held) == len(set(held)) and set(held) == inside
    for band in bands(outputs, (height, width), kernel, stride, padding):  # start: the first window's first tap
        assert band.start == (band.rows[0] * stride[0] + band.kernel_rows[0] - padding[0],
                              band.cols[0] * stride[1] + band.kernel_cols[0] - padding[1])


@pytest.mark.parametrize("backend_name", BACKENDS)
@given(geometry=conv_geometries(), seed=st.integers(0, 2**16))
def test_scatter_add_is_the_adjoint_of_gather(backend_name, geometry, seed):
    """<gather(x), r> == <x, scatter_add(r)> for every band, and gather is the padded
    image's windows at the band's taps."""
    kernel, stride, padding, channels, _, height, width = geometry
    be = mg.get_backend(backend_name, "float64", seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, height, width, channels))
    padded = np.pad(x, ((0, 0), (padding[0],) * 2, (padding[1],) * 2, (0, 0)))
    outputs = Conv2d(1, 1, kernel, stride, padding).output_shape((height, width, 1))[:2]
    for band in bands(outputs, (height, width), kernel, stride, padding):
        cols = be.to_numpy(gather(be.xp, be.asarray(x), band, stride))
        h, w, i, j = band.rows[0], band.cols[0], band.kernel_rows[0], band.kernel_cols[0]
        first = padded[0, h * stride[0] + i : h * stride[0] + i + band.kernel[0],
                       w * stride[1] + j : w * stride[1] + j + band.kernel[1]]
        np.testing.assert_array_equal(cols[0], first.reshape(-1))  # (i, j, c) order
        r = rng.standard_normal(cols.shape)
        added = be.asarray(np.zeros(x.shape))
        scatter_add(be.xp, be.asarray(r), added, band, stride)
        assert float((cols * r).sum()) == pytest.approx(float((x * be.to_numpy(added)).sum()), rel=1e-12, abs=1e-12)


@given(samples=st.integers(1, 40), sample_bytes=st.integers(1, 1000), chunk_bytes=st.integers(1, 5000))
def test_sample_chunks_cover_the_batch_in_order_within_the_budget(samples, sample_bytes, chunk_bytes):
    chunks = sample_chunks(samples, sample_bytes, chunk_bytes)
    assert [start for start, _ in chunks] == [0] + [stop for _, stop in chunks[:-1]]
    assert chunks[-1][1] == samples and all(stop > start for start, stop in chunks)
    sizes = [stop - start for start, stop in chunks]
    per_chunk = max(1, chunk_bytes // sample_bytes)  # samples within the budget (or one)
    assert max(sizes) <= per_chunk and max(sizes) - min(sizes) <= 1
    assert len(chunks) == -(-samples // per_chunk)   # as few chunks as the budget allows
    assert sample_chunks(samples, sample_bytes, None) == [(0, samples)]


@pytest.mark.parametrize("backend_name", BACKENDS)
@given(geometry=conv_geometries(), batch=st.integers(1, 5), chunk_bytes=st.integers(1, 4000), seed=st.integers(0, 2**16))
def test_chunked_work_equals_the_whole_batch_at_once(backend_name, geometry, batch, chunk_bytes, seed):
    """Both layers' forward, input and parameter gradients with the batch made a few samples
    at a time (`Backend.chunk_bytes`) equal those of one pass over the batch."""
    kernel, stride, padding, c_in, c_out, height, width = geometry
    extra = output_padding_for(height, width, kernel, stride, padding)
    conv_out = Conv2d(c_in, c_out, kernel, stride, padding).output_shape((height, width, c_in))
    rng = np.random.default_rng(seed)
    for make, input_shape in ((lambda: Conv2d(c_in, c_out, kernel, stride, padding), (height, width, c_in)),
                              (lambda: ConvTranspose2d(c_out, c_in, kernel, stride, padding, extra), conv_out)):
        x = rng.standard_normal((batch, *input_shape))
        results = []
        for chunk in (None, chunk_bytes):
            be = mg.get_backend(backend_name, "float64", seed=seed)
            be.chunk_bytes = chunk
            model = randomised(mg.Sequential([make()], backend=be, input_shape=input_shape), be, seed)
            y = model.forward(be.asarray(x))
            model.zero_grad()
            dx = model.backward(be.asarray(np.ones(y.shape) + np.arange(y.size).reshape(y.shape) % 7))
            results.append([be.to_numpy(a) for a in (y, dx, model.grads)])
        for whole, chunked in zip(*results):
            assert np.allclose(chunked, whole, rtol=1e-12, atol=1e-12 * max(1.0, float(np.abs(whole).max())))


@pytest.mark.parametrize("make, input_shape", [(lambda: Conv2d(2, 3, 3, 2, 1), (6, 6, 2)),
                                               (lambda: ConvTranspose2d(2, 3, 4, 2, 1), (3, 3, 2))])
def test_reused_buffers_never_leak_one_call_into_the_next(make, input_shape):
    """The padded and column buffers kept between calls: a layer that has seen other inputs
    and other batch sizes gives exactly what a fresh layer gives."""
    be = mg.get_backend("numpy", "float64", seed=0)
    rng = np.random.default_rng(3)
    used = mg.Sequential([make()], backend=be, input_shape=input_shape)
    fresh = mg.Sequential([make()], backend=be, input_shape=input_shape)
    weights = rng.standard_normal(used.params.shape)
    used.params[...] = weights
    fresh.params[...] = weights
    for batch in (4, 2, 4):
        x = rng.standard_normal((batch, *input_shape)) * 100
        dy = rng.standard_normal((batch, *used.output_shape))
        used.forward(x)
        used.backward(dy)
    x = rng.standard_normal((4, *input_shape))
    dy = rng.standard_normal((4, *used.output_shape))
    for model in (used, fresh):
        model.zero_grad()
    assert np.array_equal(used.forward(x), fresh.forward(x))
    assert np.array_equal(used.backward(dy), fresh.backward(dy))
    assert np.array_equal(used.grads, fresh.grads)
