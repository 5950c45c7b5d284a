"""Convolutions on channels-last images: `Conv2d` and `ConvTranspose2d`, by im2col.

Images are (N, H, W, C) and weights (kh, kw, in_channels, out_channels). A convolution
gathers every kh x kw window of the padded input into one row of a column matrix
(`im2col`, in `minigan.im2col`) and multiplies it by the weights seen as a (kh kw in, out)
matrix: one product forward. Its input gradient is the adjoint: the product with W^T
scatters each row back onto its window (`col2im`). `ConvTranspose2d` *is* that adjoint:
its forward is a convolution's input gradient and its input gradient is a convolution, so
the two share those functions and nothing else. Both make their column matrices a chunk of
samples at a time, and keep their padded image and column buffers between steps.
"""
from __future__ import annotations

from typing import Any

from .im2col import Pair, col2im_of_product, crop_image, im2col, pad_image, sample_chunks, window_count
from .layers import Layer, Shape, check_init, initial_weights, positive_int


def _pair(name: str, value: Any, minimum: int = 1) -> Pair:
    """(a, b) from an int or a pair of ints, each >= minimum; ValueError naming `name`."""
    values = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return values


class _Convolution(Layer):
    """What both convolutions share: arguments, parameters, the weight matrix, config."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, init: str = "he"):
        self.in_channels = positive_int("in_channels", in_channels)
        self.out_channels = positive_int("out_channels", out_channels)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = _pair("stride", stride)
        self.padding = _pair("padding", padding, minimum=0)
        self.init = check_init(init)
        self._col_buffer = None     # im2col's output, reused while the shapes stay the same
        self._padded_buffer = None  # the padded image im2col reads, its border kept zero

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

    def _columns(self, image: Any) -> Any:
        """im2col of `image` (N, H, W, C) padded by this layer's padding, as a new array
        (N Ho Wo, kh kw C); the layer's buffers and forward cache are left alone."""
        return im2col(self.xp, pad_image(self.xp, image, self.padding), self.kernel_size, self.stride)

    def _columns_times(self, image: Any, matrix: Any) -> tuple[Any, Any]:
        """(cols, cols @ matrix): im2col of `image` (N, H, W, C), padded, into the layer's
        column buffer (N Ho Wo, kh kw C), and its product with `matrix` (kh kw C, M) as
        (N Ho Wo, M), each chunk of samples multiplied while its columns are in cache."""
        padded = self._pad(image)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        n, hp, wp, c = padded.shape
        ho, wo = window_count(hp, kh, sh), window_count(wp, kw, sw)
        self._col_buffer = self._buffer(self._col_buffer, (n, ho, wo, kh, kw, c), padded.dtype, self.xp.empty)
        product = self.xp.empty((n * ho * wo, matrix.shape[1]), dtype=padded.dtype)
        sample_bytes = ho * wo * kh * kw * c * padded.dtype.itemsize
        for start, stop in sample_chunks(n, sample_bytes, self.backend.chunk_bytes):
            chunk = im2col(self.xp, padded[start:stop], self.kernel_size, self.stride,
                           out=self._col_buffer[start:stop])                   # (chunk Ho Wo, kh kw C)
            self.xp.matmul(chunk, matrix, out=product[start * ho * wo : stop * ho * wo])
        return self._col_buffer.reshape(n * ho * wo, kh * kw * c), product

    def _pad(self, image: Any) -> Any:
        """`image` (N, H, W, C) padded by this layer's padding, in the layer's padded buffer
        (im2col copies out of it at once, so one buffer serves every call)."""
        (ph, pw) = self.padding
        if ph == pw == 0:
            return image
        n, h, w, c = image.shape
        shape = (n, h + 2 * ph, w + 2 * pw, c)
        self._padded_buffer = self._buffer(self._padded_buffer, shape, image.dtype, self.xp.zeros)
        return pad_image(self.xp, image, self.padding, out=self._padded_buffer)

    @staticmethod
    def _buffer(buffer: Any, shape: tuple[int, ...], dtype: Any, make: Any) -> Any:
        """`buffer` when it has this shape and dtype, else make(shape, dtype)."""
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            return make(shape, dtype=dtype)
        return buffer

    def _add_bias_gradient(self, dy: Any, grads: str) -> None:
        if grads == "add":
            self.db += dy.sum(axis=(0, 1, 2))
        elif grads == "write":
            dy.sum(axis=(0, 1, 2), out=self.db)


class Conv2d(_Convolution):
    """2-D convolution (cross-correlation, as torch's conv2d) on (N, H, W, in_channels).

    y[n, h, w, o] = b[o] + sum_{i, j, c} x_pad[n, h s + i, w s + j, c] W[i, j, c, o];
    output size (H + 2 p - k) // s + 1. Backward: dW = cols^T dy, db = sum dy,
    dx = col2im(dy W^T) without the padding.

    Args:
        in_channels, out_channels: channels of the input and output.
        kernel_size, stride, padding: an int or a (height, width) pair.
        init: "he" (default), "xavier" or "normal" (std 0.02, DCGAN), with fan-in
            kh kw in_channels; the bias starts at zero.
    """

    def output_shape(self, input_shape: Shape) -> Shape:
        h, w = self._check_image(input_shape)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if h + 2 * ph < kh or w + 2 * pw < kw:
            raise ValueError(f"kernel {self.kernel_size} is larger than the padded input "
                             f"({h + 2 * ph}, {w + 2 * pw})")
        return (window_count(h + 2 * ph, kh, sh), window_count(w + 2 * pw, kw, sw), self.out_channels)

    def forward(self, x: Any) -> Any:
        self.input_shape = x.shape
        self.cols, y = self._columns_times(x, self.W.reshape(-1, self.out_channels))
        y += self.b                                                             # (N Ho Wo, out)
        return y.reshape(x.shape[0], *self.output_shape(x.shape[1:]))

    def _product(self, cols: Any, input_shape: tuple[int, ...]) -> Any:
        """cols @ W for an input of `input_shape`, as images (N, Ho, Wo, out)."""
        y = cols @ self.W.reshape(-1, self.out_channels)                        # (N Ho Wo, out)
        return y.reshape(input_shape[0], *self.output_shape(input_shape[1:]))

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
        dy_rows = dy.reshape(-1, self.out_channels)                            # (N Ho Wo, out)
        weight_grad = self.dW.reshape(-1, self.out_channels)                   # a view of dW
        if grads == "add":
            weight_grad += self.cols.T @ dy_rows                               # (kh kw C, out)
        elif grads == "write":
            self.xp.matmul(self.cols.T, dy_rows, out=weight_grad)
        self._add_bias_gradient(dy, grads)
        if not input_grad:
            return None
        return self.input_gradient(dy_rows, self.input_shape)

    def input_gradient(self, dy_rows: Any, input_shape: tuple[int, ...]) -> Any:
        """dL/dx (N, H, W, C) of dy given as rows (N Ho Wo, out): col2im(dy W^T), unpadded."""
        n, h, w, c = input_shape
        (ph, pw) = self.padding
        weight_rows = self.W.reshape(-1, self.out_channels).T                  # (out, kh kw C)
        image = col2im_of_product(self.xp, dy_rows, weight_rows, (n, h + 2 * ph, w + 2 * pw, c),
                                  self.kernel_size, self.stride, self.backend.chunk_bytes)
        return crop_image(image, self.padding, (h, w))

    def weight_gradient(self, x: Any, dy: Any) -> Any:
        """dL/dW (kh, kw, in, out) for an input x and output gradient dy, without touching
        the forward cache (used by the gradient penalty)."""
        return (self._columns(x).T @ dy.reshape(-1, self.out_channels)).reshape(self.W.shape)

    def linear(self, x: Any) -> Any:
        """The convolution of x without the bias, without touching the forward cache."""
        return self._product(self._columns(x), x.shape)


class ConvTranspose2d(_Convolution):
    """The adjoint of `Conv2d` (torch's conv_transpose2d), on (N, H, W, in_channels).

    With W of shape (kh, kw, in, out), it is the input gradient of the convolution from
    `out` to `in` channels with the same kernel, stride and padding: y = col2im(x W^T)
    cropped, plus b; output size (H - 1) s - 2 p + k + output_padding. Backward:
    dx = im2col(dy_pad) W (a convolution), dW = x^T im2col(dy_pad), db = sum dy.

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

    def output_shape(self, input_shape: Shape) -> Shape:
        h, w = self._check_image(input_shape)
        sizes = [(size - 1) * s - 2 * p + k + extra for size, s, p, k, extra in
                 zip((h, w), self.stride, self.padding, self.kernel_size, self.output_padding)]
        if min(sizes) < 1:
            raise ValueError(f"the padding {self.padding} leaves no output ({sizes[0]}, {sizes[1]})")
        return (*sizes, self.out_channels)

    def _weight_matrix(self) -> Any:
        """W as (in, kh kw out): row c holds W[:, :, c, :] in im2col's (i, j, o) order."""
        return self.W.transpose(2, 0, 1, 3).reshape(self.in_channels, -1)

    def forward(self, x: Any) -> Any:
        n, h, w, _ = self.input_shape = x.shape
        self.x_rows = x.reshape(-1, self.in_channels)                           # (N H W, in)
        out_h, out_w, _ = self.output_shape(x.shape[1:])
        (ph, pw) = self.padding
        image = col2im_of_product(self.xp, self.x_rows, self._weight_matrix(),  # (N, Hp, Wp, out)
                                  (n, out_h + 2 * ph, out_w + 2 * pw, self.out_channels),
                                  self.kernel_size, self.stride, self.backend.chunk_bytes)
        y = crop_image(image, self.padding, (out_h, out_w))
        y += self.b
        return y

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
        # A convolution of dy: cols = im2col(dy_pad) (N H W, kh kw out), dx = cols W_m^T and
        # dW_m = x^T cols (W_m the (in, kh kw out) weight matrix), made a chunk of samples at
        # a time so that each chunk of columns is used while in cache (`sample_chunks`).
        padded = self._pad(dy)                                                  # (N, Hp, Wp, out)
        (kh, kw), n = self.kernel_size, dy.shape[0]
        per_sample = self.x_rows.shape[0] // n                                  # H W
        weight_matrix = self._weight_matrix()                                   # (in, kh kw out)
        weight_grad = self.xp.zeros(weight_matrix.shape, dy.dtype) if grads != "skip" else None
        dx = self.xp.empty(self.x_rows.shape, dy.dtype) if input_grad else None  # (N H W, in)
        chunks = sample_chunks(n, per_sample * weight_matrix.shape[1] * dy.dtype.itemsize, self.backend.chunk_bytes)
        largest = max(stop - start for start, stop in chunks)
        shape = (largest, *self.input_shape[1:3], kh, kw, self.out_channels)   # one chunk's columns
        self._col_buffer = self._buffer(self._col_buffer, shape, dy.dtype, self.xp.empty)
        for start, stop in chunks:
            rows = slice(start * per_sample, stop * per_sample)
            cols = im2col(self.xp, padded[start:stop], self.kernel_size, self.stride,
                          out=self._col_buffer[: stop - start])                 # (chunk H W, kh kw out)
            if weight_grad is not None:
                weight_grad += self.x_rows[rows].T @ cols
            if dx is not None:
                self.xp.matmul(cols, weight_matrix.T, out=dx[rows])
        if weight_grad is not None:
            weight_grad = weight_grad.reshape(self.in_channels, kh, kw, self.out_channels)
            if grads == "add":
                self.dW += weight_grad.transpose(1, 2, 0, 3)                    # (kh, kw, in, out)
            else:
                self.dW[...] = weight_grad.transpose(1, 2, 0, 3)
        self._add_bias_gradient(dy, grads)
        return None if dx is None else dx.reshape(self.input_shape)
