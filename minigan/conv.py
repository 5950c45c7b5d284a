"""Convolutions on channels-last images: `Conv2d` and `ConvTranspose2d`, by im2col.

Images are (N, H, W, C) and weights (kh, kw, in_channels, out_channels). A convolution
gathers every kh x kw window of the padded input into one row of a column matrix
(`im2col`: a strided view, `sliding_window_view`, copied once) and multiplies it by the
weights seen as a (kh kw in, out) matrix: one product forward. Its input gradient is the
adjoint: the product with W^T scatters each row back onto its window (`col2im`, kh kw
strided slice-adds). `ConvTranspose2d` *is* that adjoint: its forward is a convolution's
input gradient and its input gradient is a convolution, so the two share these three
functions and nothing else.
"""
from __future__ import annotations

from typing import Any

from .layers import Layer, Shape, check_init, initial_weights, positive_int

Pair = tuple[int, int]


def _pair(name: str, value: Any, minimum: int = 1) -> Pair:
    """(a, b) from an int or a pair of ints, each >= minimum; ValueError naming `name`."""
    values = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return values


def window_count(size: int, kernel: int, stride: int) -> int:
    """Number of kernel positions along an axis of `size` (padding included)."""
    return (size - kernel) // stride + 1


def im2col(xp: Any, x: Any, kernel: Pair, stride: Pair, out: Any = None) -> Any:
    """The windows of a padded image as a matrix.

    Args:
        x: (N, Hp, Wp, C) padded images.
        out: optional (N, Ho, Wo, kh, kw, C) array to write into (reused between steps).

    Returns:
        (N * Ho * Wo, kh * kw * C), row (n, h, w) holding x[n, h s + i, w s + j, c] in
        (i, j, c) order, the order of the weights' first three axes.
    """
    (kh, kw), (sh, sw) = kernel, stride
    n, hp, wp, c = x.shape
    ho, wo = window_count(hp, kh, sh), window_count(wp, kw, sw)
    windows = xp.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))  # (N, Hp-kh+1, Wp-kw+1, C, kh, kw)
    windows = windows[:, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw]     # (N, Ho, Wo, C, kh, kw)
    if out is None:
        out = xp.empty((n, ho, wo, kh, kw, c), dtype=x.dtype)
    out[...] = windows.transpose(0, 1, 2, 4, 5, 3)  # the one copy: (N, Ho, Wo, kh, kw, C)
    return out.reshape(n * ho * wo, kh * kw * c)


def col2im(xp: Any, cols: Any, padded_shape: tuple[int, int, int, int], kernel: Pair, stride: Pair) -> Any:
    """The adjoint of `im2col`: adds every row of `cols` back onto its window.

    Args:
        cols: (N * Ho * Wo, kh * kw * C) in im2col's order.
        padded_shape: (N, Hp, Wp, C) of the padded image.

    Returns:
        A new (N, Hp, Wp, C) array.
    """
    (kh, kw), (sh, sw) = kernel, stride
    n, hp, wp, c = padded_shape
    ho, wo = window_count(hp, kh, sh), window_count(wp, kw, sw)
    cols = cols.reshape(n, ho, wo, kh, kw, c)
    image = xp.zeros(padded_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            image[:, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw] += cols[:, :, :, i, j]
    return image


def pad_image(xp: Any, x: Any, padding: Pair, extra: Pair = (0, 0)) -> Any:
    """x (N, H, W, C) with `padding` zeros on each side (plus `extra` at the bottom/right)."""
    (ph, pw), (eh, ew) = padding, extra
    if ph == pw == eh == ew == 0:
        return x
    return xp.pad(x, ((0, 0), (ph, ph + eh), (pw, pw + ew), (0, 0)))


def crop_image(x: Any, padding: Pair, size: Pair) -> Any:
    """The (N, H, W, C) interior of a padded image: rows ph..ph+H, columns pw..pw+W."""
    (ph, pw), (h, w) = padding, size
    return x[:, ph : ph + h, pw : pw + w]


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
        self._col_buffer = None  # im2col's output, reused while the shapes stay the same

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

    def _columns(self, image: Any, reuse_buffer: bool = False) -> Any:
        """im2col of `image` (N, H, W, C) padded by this layer's padding: (N Ho Wo, kh kw C).
        With `reuse_buffer` the columns go into the layer's buffer (the forward cache);
        otherwise into a new array, leaving that cache alone."""
        padded = pad_image(self.xp, image, self.padding)
        if not reuse_buffer:
            return im2col(self.xp, padded, self.kernel_size, self.stride)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        n, hp, wp, c = padded.shape
        shape = (n, window_count(hp, kh, sh), window_count(wp, kw, sw), kh, kw, c)
        if self._col_buffer is None or self._col_buffer.shape != shape or self._col_buffer.dtype != padded.dtype:
            self._col_buffer = self.xp.empty(shape, dtype=padded.dtype)
        return im2col(self.xp, padded, self.kernel_size, self.stride, out=self._col_buffer)

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
        self.cols = self._columns(x, reuse_buffer=True)                         # (N Ho Wo, kh kw C)
        y = self._product(self.cols, x.shape)                                   # (N, Ho, Wo, out)
        y += self.b
        return y

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
        dcols = dy_rows @ self.W.reshape(-1, self.out_channels).T              # (N Ho Wo, kh kw C)
        image = col2im(self.xp, dcols, (n, h + 2 * ph, w + 2 * pw, c), self.kernel_size, self.stride)
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
        cols = self.x_rows @ self._weight_matrix()                              # (N H W, kh kw out)
        image = col2im(self.xp, cols, (n, out_h + 2 * ph, out_w + 2 * pw, self.out_channels),
                       self.kernel_size, self.stride)                           # (N, Hp, Wp, out)
        y = crop_image(image, self.padding, (out_h, out_w))
        y += self.b
        return y

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
        cols = self._columns(dy, reuse_buffer=True)                             # (N H W, kh kw out)
        if grads != "skip":
            weight_grad = (self.x_rows.T @ cols).reshape(self.in_channels, *self.kernel_size, self.out_channels)
            weight_grad = weight_grad.transpose(1, 2, 0, 3)                     # (kh, kw, in, out)
            if grads == "add":
                self.dW += weight_grad
            else:
                self.dW[...] = weight_grad
        self._add_bias_gradient(dy, grads)
        if not input_grad:
            return None
        dx = cols @ self._weight_matrix().T                                     # (N H W, in)
        return dx.reshape(self.input_shape)
