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
is a convolution. Both make their column matrices a chunk of samples at a time and keep
their column buffers between steps; what they share lives in `minigan.conv_base`.
"""
from __future__ import annotations

from typing import Any

from .conv_base import _Convolution, _pair
from .im2col import Band, band_rows, gather, scatter_add, window_count
from .layers import Shape


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
        band_list = self.bands_for(x.shape[1:3], (ho, wo))
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
        band_list = self.bands_for(self.input_shape[1:3], dy.shape[1:3])
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
        for band, rows in zip(self.bands_for(input_shape[1:3], outputs), dy_rows):
            per_sample = band.size[0] * band.size[1]
            matrix = self._kernel_part(band).reshape(-1, self.out_channels).T  # (out, ki kj in)
            for start, stop in self._chunks(n, band, self.in_channels, dx.dtype):
                scatter_add(xp, rows[start * per_sample : stop * per_sample] @ matrix, dx[start:stop],
                            band, self.stride, self.backend.compiled)
        return self._crop(dx, input_shape[1:3])

    def weight_gradient(self, x: Any, dy: Any) -> Any:
        """dL/dW (kh, kw, in, out) for an input x and output gradient dy, without touching
        the forward cache (used by the gradient penalty)."""
        return self._weight_gradient(
            [(band, (gather(self.xp, self._image(x), band, self.stride).T @ band_rows(self.xp, dy, band))
              .reshape(*band.kernel, self.in_channels, self.out_channels))
             for band in self.bands_for(x.shape[1:3], dy.shape[1:3])], dy.dtype)


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
        band_list = self.bands_for((out_h, out_w), x.shape[1:3])
        self.x_rows = [band_rows(xp, x, band) for band in band_list]           # each (N bh bw, in), for dW
        for band, rows in zip(band_list, self.x_rows):
            per_sample = band.size[0] * band.size[1]
            matrix = self._part_matrix(band)                                    # (in, ki kj out)
            for start, stop in self._chunks(n, band, out, x.dtype):
                scatter_add(xp, rows[start * per_sample : stop * per_sample] @ matrix, y[start:stop],
                            band, self.stride, self.backend.compiled)
        y = self._crop(y, (out_h, out_w))
        y += self.b
        return y

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
        # A convolution of dy: per band cols = gather(dy) (N bh bw, ki kj out), dx = cols W_part
        # (as (in, ki kj out))^T and dW_part = x_rows^T cols, made a chunk of samples at a time
        # so that each chunk of columns is used while in cache (`sample_chunks`).
        xp, n = self.xp, dy.shape[0]
        band_list = self.bands_for(dy.shape[1:3], self.input_shape[1:3])
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
