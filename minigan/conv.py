"""Convolutions on channels-last images: `Conv2d` and `ConvTranspose2d`, by im2col in bands.

Images are (N, H, W, C) and weights (kh, kw, in_channels, out_channels). A convolution
gathers every kh x kw window of its input into one row of a column matrix and multiplies
it by the weights seen as a (kh kw in, out) matrix; its input gradient is the adjoint, the
product with W^T added back onto the windows. Over a padded image part of those products
would multiply the padding's zeros (14% for a k4 s2 p1 layer at 14x14), so the layers split
the output into bands (`minigan.im2col.bands`) whose windows all use the same part of the
kernel and lie inside the image: the layer is the sum of the bands' unpadded convolutions
with those parts, and every product is over real pixels. `ConvTranspose2d` *is* the
adjoint of `Conv2d`: its forward is a convolution's input gradient and its input gradient
is a convolution, so the two share those functions and nothing else. Both make their
column matrices a chunk of samples at a time and keep their column buffers between steps.
"""
from __future__ import annotations

from typing import Any

from .im2col import Band, Pair, band_rows, bands, gather, sample_chunks, scatter_add, window_count
from .layers import Layer, Shape, check_init, initial_weights, positive_int


def _pair(name: str, value: Any, minimum: int = 1) -> Pair:
    """(a, b) from an int or a pair of ints, each >= minimum; ValueError naming `name`."""
    values = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return values


class _Convolution(Layer):
    """What both convolutions share: arguments, parameters, bands, column buffers, config.

    `_bands(size, outputs)` are the bands of the convolution from images of `size` (H, W)
    to `outputs` (Ho, Wo) windows: for Conv2d its input to its output, for ConvTranspose2d
    its output to its input. With one channel on the image side the bands' small copies and
    adds cost more than the padding's products save (7% at 28x28), so there the image is
    padded (`_image`, `_crop`) and one band covers it, as a plain im2col."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, init: str = "he"):
        self.in_channels = positive_int("in_channels", in_channels)
        self.out_channels = positive_int("out_channels", out_channels)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = _pair("stride", stride)
        self.padding = _pair("padding", padding, minimum=0)
        self.init = check_init(init)
        self._band_table: dict[tuple[Pair, Pair], list[Band]] = {}
        self._col_buffers: dict[int, Any] = {}  # band index -> its columns, reused while the shapes stay
        self._padded_buffer = None                  # the padded image a one-channel layer gathers from

    def config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride), "padding": list(self.padding), "init": self.init}

    def param_shapes(self) -> dict[str, Shape]:
        return {"W": (*self.kernel_size, self.in_channels, self.out_channels), "b": (self.out_channels,)}

    def reset_parameters(self) -> None:
        kh, kw = self.kernel_size
        self.W[...] = initial_weights(self.backend, self.init, self.W.shape, kh * kw * self.in_channels,
                                      kh * kw * self.out_channels)
        self.b[...] = 0

    def _check_image(self, input_shape: Shape) -> tuple[int, int]:
        if len(input_shape) != 3 or input_shape[2] != self.in_channels:
            raise ValueError(f"expects images (H, W, {self.in_channels}) (channels last)")
        return input_shape[0], input_shape[1]

    image_channels = 0  # channels of the image side: Conv2d's input, ConvTranspose2d's output

    @property
    def _pads(self) -> bool:
        """Whether the image side is padded and gathered whole instead of in bands: one
        channel there, and some padding."""
        return self.image_channels == 1 and self.padding != (0, 0)

    def _bands(self, size: Pair, outputs: Pair) -> list[Band]:
        key = (tuple(size), tuple(outputs))
        if key not in self._band_table:
            if self._pads:  # one band over the padded image
                padded = tuple(side + 2 * pad for side, pad in zip(size, self.padding))
                self._band_table[key] = bands(outputs, padded, self.kernel_size, self.stride, (0, 0))
            else:
                self._band_table[key] = bands(outputs, size, self.kernel_size, self.stride, self.padding)
        return self._band_table[key]

    def _image(self, image: Any) -> Any:
        """The image (N, H, W, C) the bands gather from: padded, in a kept buffer whose
        border stays zero, when the layer `_pads`; else the image itself."""
        if not self._pads:
            return image
        (ph, pw), (_, h, w, _) = self.padding, image.shape
        self._padded_buffer = self._reuse(self._padded_buffer, self._padded_shape(image.shape), image.dtype,
                                          self.xp.zeros)
        self._padded_buffer[:, ph : ph + h, pw : pw + w] = image
        return self._padded_buffer

    def _padded_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """(N, H + 2 ph, W + 2 pw, C) of images of `shape` (N, H, W, C)."""
        (ph, pw), (n, h, w, c) = self.padding, shape
        return (n, h + 2 * ph, w + 2 * pw, c)

    @staticmethod
    def _reuse(buffer: Any, shape: tuple[int, ...], dtype: Any, make: Any) -> Any:
        """`buffer` when it has this shape and dtype, else make(shape, dtype)."""
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            return make(shape, dtype=dtype)
        return buffer

    def _scatter_target(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """A zero image of `shape` (N, H, W, C) for the bands to add onto, padded when the
        layer `_pads` (`_crop` takes the padding off)."""
        return self.xp.zeros(self._padded_shape(shape) if self._pads else shape, dtype=dtype)

    def _crop(self, image: Any, size: Pair) -> Any:
        """`_scatter_target`'s image without the padding: (N, H, W, C) of `size`."""
        if not self._pads:
            return image
        (ph, pw), (h, w) = self.padding, size
        return image[:, ph : ph + h, pw : pw + w]

    @staticmethod
    def _covers(band_list: list[Band], outputs: Pair) -> bool:
        """Whether the bands hold every output position (else some lie wholly on padding)."""
        return sum(band.size[0] * band.size[1] for band in band_list) == outputs[0] * outputs[1]

    def _kernel_part(self, band: Band) -> Any:
        """W[i0:i1, j0:j1] (ki, kj, in, out) of the band's taps."""
        (i0, i1), (j0, j1) = band.kernel_rows, band.kernel_cols
        return self.W[i0:i1, j0:j1]

    def _weight_gradient(self, parts: list[tuple[Band, Any]], dtype: Any) -> Any:
        """dL/dW (kh, kw, in, out) from each band's part (ki, kj, in, out), summed in a new
        array: a pass's gradient is made whole before it meets the accumulated one, so that
        passes add up the same way in any order (D's real and fake passes, on any process)."""
        weight_grad = self.xp.zeros(self.W.shape, dtype=dtype)
        for band, part in parts:
            (i0, i1), (j0, j1) = band.kernel_rows, band.kernel_cols
            weight_grad[i0:i1, j0:j1] += part
        return weight_grad

    def _store_weight_gradient(self, weight_grad: Any, grads: str) -> None:
        if grads == "add":
            self.dW += weight_grad
        elif grads == "write":
            self.dW[...] = weight_grad

    def _chunks(self, n: int, band: Band, channels: int, dtype: Any) -> list[tuple[int, int]]:
        """Chunks of samples within the backend's budget for the band's columns."""
        (bh, bw), (ki, kj) = band.size, band.kernel
        return sample_chunks(n, bh * bw * ki * kj * channels * dtype.itemsize, self.backend.chunk_bytes)

    def _column_buffer(self, index: int, shape: tuple[int, ...], dtype: Any) -> Any:
        """The band's column buffer when it has this shape and dtype, else a new one."""
        self._col_buffers[index] = self._reuse(self._col_buffers.get(index), shape, dtype, self.xp.empty)
        return self._col_buffers[index]

    def _add_bias_gradient(self, dy: Any, grads: str) -> None:
        if grads == "add":
            self.db += dy.sum(axis=(0, 1, 2))
        elif grads == "write":
            dy.sum(axis=(0, 1, 2), out=self.db)


class Conv2d(_Convolution):
    """2-D convolution (cross-correlation, as torch's conv2d) on (N, H, W, in_channels).

    y[n, h, w, o] = b[o] + sum_{i, j, c} x_pad[n, h s + i, w s + j, c] W[i, j, c, o];
    output size (H + 2 p - k) // s + 1. Per band: cols = gather(x), y = cols W_part;
    backward dW_part += cols^T dy, db = sum dy, dx += scatter(dy W_part^T).

    Args:
        in_channels, out_channels: channels of the input and output.
        kernel_size, stride, padding: an int or a (height, width) pair.
        init: "he" (default), "xavier" or "normal" (std 0.02, DCGAN), with fan-in
            kh kw in_channels; the bias starts at zero.
    """

    @property
    def image_channels(self) -> int:
        return self.in_channels

    def output_shape(self, input_shape: Shape) -> Shape:
        h, w = self._check_image(input_shape)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if h + 2 * ph < kh or w + 2 * pw < kw:
            raise ValueError(f"kernel {self.kernel_size} is larger than the padded input "
                             f"({h + 2 * ph}, {w + 2 * pw})")
        return (window_count(h + 2 * ph, kh, sh), window_count(w + 2 * pw, kw, sw), self.out_channels)

    def forward(self, x: Any) -> Any:
        self.input_shape = x.shape
        y, self.cols = self._convolve(x, keep_columns=True)
        y += self.b
        return y

    def linear(self, x: Any) -> Any:
        """The convolution of x without the bias, without touching the forward cache."""
        return self._convolve(x, keep_columns=False)[0]

    def _convolve(self, x: Any, keep_columns: bool) -> tuple[Any, list[Any]]:
        """(x convolved with W, no bias, as (N, Ho, Wo, out); each band's columns (N bh bw,
        ki kj in), in the layer's buffers when kept for backward, else new)."""
        xp, n = self.xp, x.shape[0]
        ho, wo, out = self.output_shape(x.shape[1:])
        band_list = self._bands(x.shape[1:3], (ho, wo))
        y = (xp.empty if self._covers(band_list, (ho, wo)) else xp.zeros)((n, ho, wo, out), dtype=x.dtype)
        image, columns = self._image(x), []
        for index, band in enumerate(band_list):
            (h0, h1), (w0, w1), (bh, bw), (ki, kj) = band.rows, band.cols, band.size, band.kernel
            shape = (n, bh, bw, ki, kj, self.in_channels)
            buffer = self._column_buffer(index, shape, x.dtype) if keep_columns else xp.empty(shape, x.dtype)
            matrix = self._kernel_part(band).reshape(-1, out)                 # (ki kj in, out)
            product = xp.empty((n * bh * bw, out), dtype=x.dtype)
            for start, stop in self._chunks(n, band, self.in_channels, x.dtype):
                cols = gather(xp, image[start:stop], band, self.stride, out=buffer[start:stop])  # (chunk bh bw, ki kj in)
                xp.matmul(cols, matrix, out=product[start * bh * bw : stop * bh * bw])
            y[:, h0:h1, w0:w1] = product.reshape(n, bh, bw, out)
            columns.append(buffer.reshape(n * bh * bw, -1))
        return y, columns

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
        band_list = self._bands(self.input_shape[1:3], dy.shape[1:3])
        dy_rows = [band_rows(self.xp, dy, band) for band in band_list]         # each (N bh bw, out)
        if grads != "skip":
            parts = [(band, (cols.T @ rows).reshape(*band.kernel, self.in_channels, self.out_channels))
                     for band, cols, rows in zip(band_list, self.cols, dy_rows)]  # cols^T dy: (ki kj in, out)
            self._store_weight_gradient(self._weight_gradient(parts, dy.dtype), grads)
        self._add_bias_gradient(dy, grads)
        if not input_grad:
            return None
        return self.input_gradient(dy_rows, self.input_shape, dy.dtype)

    def input_gradient(self, dy_rows: list[Any], input_shape: tuple[int, ...], dtype: Any) -> Any:
        """dL/dx (N, H, W, in) of dy given as each band's rows (N bh bw, out), in the order of
        the bands: each band's dy W_part^T added onto its windows of x."""
        xp, n = self.xp, input_shape[0]
        dx = self._scatter_target(input_shape, dtype)
        outputs = self.output_shape(input_shape[1:])[:2]
        for band, rows in zip(self._bands(input_shape[1:3], outputs), dy_rows):
            per_sample = band.size[0] * band.size[1]
            matrix = self._kernel_part(band).reshape(-1, self.out_channels).T  # (out, ki kj in)
            for start, stop in self._chunks(n, band, self.in_channels, dx.dtype):
                scatter_add(xp, rows[start * per_sample : stop * per_sample] @ matrix, dx[start:stop],
                            band, self.stride)
        return self._crop(dx, input_shape[1:3])

    def weight_gradient(self, x: Any, dy: Any) -> Any:
        """dL/dW (kh, kw, in, out) for an input x and output gradient dy, without touching
        the forward cache (used by the gradient penalty)."""
        return self._weight_gradient(
            [(band, (gather(self.xp, self._image(x), band, self.stride).T @ band_rows(self.xp, dy, band))
              .reshape(*band.kernel, self.in_channels, self.out_channels))
             for band in self._bands(x.shape[1:3], dy.shape[1:3])], dy.dtype)


class ConvTranspose2d(_Convolution):
    """The adjoint of `Conv2d` (torch's conv_transpose2d), on (N, H, W, in_channels).

    With W of shape (kh, kw, in, out), it is the input gradient of the convolution from
    `out` to `in` channels with the same kernel, stride and padding: per band
    y += scatter(x W_part^T), plus b; output size (H - 1) s - 2 p + k + output_padding.
    Backward, per band: dx = gather(dy) W_part (a convolution), dW_part = x^T gather(dy),
    db = sum dy.

    Args:
        in_channels, out_channels: channels of the input and output.
        kernel_size, stride, padding, output_padding: an int or a (height, width) pair;
            output_padding (< stride) adds rows and columns at the bottom and right.
        init: "he" (default), "xavier" or "normal" (std 0.02, DCGAN); the bias starts at zero.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, init: str = "he"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, init)
        self.output_padding = _pair("output_padding", output_padding, minimum=0)
        if any(extra >= step for extra, step in zip(self.output_padding, self.stride)):
            raise ValueError(f"output_padding {self.output_padding} must be smaller than the stride {self.stride}")

    def config(self) -> dict[str, Any]:
        return {**super().config(), "output_padding": list(self.output_padding)}

    @property
    def image_channels(self) -> int:
        return self.out_channels

    def output_shape(self, input_shape: Shape) -> Shape:
        h, w = self._check_image(input_shape)
        sizes = [(size - 1) * s - 2 * p + k + extra for size, s, p, k, extra in
                 zip((h, w), self.stride, self.padding, self.kernel_size, self.output_padding)]
        if min(sizes) < 1:
            raise ValueError(f"the padding {self.padding} leaves no output ({sizes[0]}, {sizes[1]})")
        return (*sizes, self.out_channels)

    def _part_matrix(self, band: Band) -> Any:
        """W[i0:i1, j0:j1] as (in, ki kj out): row c holds the part's W[:, :, c, :] in
        gather's (i, j, o) order."""
        return self._kernel_part(band).transpose(2, 0, 1, 3).reshape(self.in_channels, -1)

    def forward(self, x: Any) -> Any:
        # The input gradient of the convolution from `out` to `in` channels: each band's rows
        # of x times W_part^T, added onto its windows of the output.
        xp, n = self.xp, x.shape[0]
        self.input_shape = x.shape
        out_h, out_w, out = self.output_shape(x.shape[1:])
        y = self._scatter_target((n, out_h, out_w, out), x.dtype)
        band_list = self._bands((out_h, out_w), x.shape[1:3])
        self.x_rows = [band_rows(xp, x, band) for band in band_list]           # each (N bh bw, in), for dW
        for band, rows in zip(band_list, self.x_rows):
            per_sample = band.size[0] * band.size[1]
            matrix = self._part_matrix(band)                                    # (in, ki kj out)
            for start, stop in self._chunks(n, band, out, x.dtype):
                scatter_add(xp, rows[start * per_sample : stop * per_sample] @ matrix, y[start:stop],
                            band, self.stride)
        y = self._crop(y, (out_h, out_w))
        y += self.b
        return y

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
        # A convolution of dy: per band cols = gather(dy) (N bh bw, ki kj out), dx = cols W_part
        # (as (in, ki kj out))^T and dW_part = x_rows^T cols, made a chunk of samples at a time
        # so that each chunk of columns is used while in cache (`sample_chunks`).
        xp, n = self.xp, dy.shape[0]
        band_list = self._bands(dy.shape[1:3], self.input_shape[1:3])
        image, parts = self._image(dy), []
        dx = None
        if input_grad:
            make = xp.empty if self._covers(band_list, self.input_shape[1:3]) else xp.zeros
            dx = make(self.input_shape, dtype=dy.dtype)                         # (N, H, W, in)
        for index, (band, x_rows) in enumerate(zip(band_list, self.x_rows)):  # x_rows (N bh bw, in)
            (h0, h1), (w0, w1), (bh, bw), (ki, kj) = band.rows, band.cols, band.size, band.kernel
            matrix = self._part_matrix(band)                                    # (in, ki kj out)
            chunks = self._chunks(n, band, self.out_channels, dy.dtype)
            largest = max(stop - start for start, stop in chunks)
            buffer = self._column_buffer(index, (largest, bh, bw, ki, kj, self.out_channels), dy.dtype)
            part = xp.zeros(matrix.shape, dtype=dy.dtype) if grads != "skip" else None
            dx_rows = xp.empty((n * bh * bw, self.in_channels), dtype=dy.dtype) if input_grad else None
            for start, stop in chunks:
                rows = slice(start * bh * bw, stop * bh * bw)
                cols = gather(xp, image[start:stop], band, self.stride, out=buffer[: stop - start])
                if part is not None:
                    part += x_rows[rows].T @ cols
                if dx_rows is not None:
                    xp.matmul(cols, matrix.T, out=dx_rows[rows])
            if part is not None:
                parts.append((band, part.reshape(self.in_channels, ki, kj, self.out_channels).transpose(1, 2, 0, 3)))
            if dx is not None:
                dx[:, h0:h1, w0:w1] = dx_rows.reshape(n, bh, bw, self.in_channels)
        if grads != "skip":
            self._store_weight_gradient(self._weight_gradient(parts, dy.dtype), grads)
        self._add_bias_gradient(dy, grads)
        return dx
