"""What both convolutions (`minigan.conv`) share: their arguments and parameters, the
bands of a padded convolution (`minigan.im2col.bands`) kept per shape, the column and
padded-image buffers kept between steps, and the weight gradient assembled from the bands'
parts of the kernel.
"""
from __future__ import annotations

from typing import Any

from .im2col import Band, Pair, bands, sample_chunks
from .layers import Layer, Shape, check_init, initial_weights, positive_int


def _pair(name: str, value: Any, minimum: int = 1) -> Pair:
    """(a, b) from an int or a pair of ints, each >= minimum; ValueError naming `name`."""
    values = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return values


class _Convolution(Layer):
    """What both convolutions share: arguments, parameters, bands, column buffers, config.

    `bands_for(size, outputs)` are the bands of the convolution from images of `size` (H, W)
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

    def bands_for(self, size: Pair, outputs: Pair) -> list[Band]:
        """The bands (`minigan.im2col.Band`) this layer computes between images of `size`
        (H, W) and `outputs` (Ho, Wo) windows, in the order it uses them; kept per shape."""
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
