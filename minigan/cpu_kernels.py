"""Compiled CPU passes (Numba) for the NumPy backend, each giving the same bits as the NumPy
code it replaces.

NumPy makes every arithmetic step its own pass over memory: BatchNorm's normalisation
(x - mean, * inv_std, * gamma, + beta) reads and writes the whole activation four times,
and col2im adds a class of windows at a time. On the CPU those passes, not the
arithmetic, are most of a convolutional step outside its matrix products
(docs/benchmarks.md). Each function here is a plain loop nest that does in one pass what
its caller's NumPy path does in several, with the same operations in the same order and
in the same dtype (no fused multiply-add, no reassociation: Numba's defaults), so the two
paths give the same bits; tests/test_cpu_kernels.py checks that with `array_equal` over
random shapes. A layer takes the compiled path when its backend's `compiled` is true: on
the NumPy backend when Numba imports (`pip install minigan[fast]`) and `$MINIGAN_COMPILED`
is not "0". Importing this module needs no Numba: each loop is compiled at its first call
(and cached on disk), and stays a plain Python function to read.

The loops are serial: a second thread of their own would compete with the BLAS threads
that spin after every product (docs/benchmarks.md).
"""
from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any, Callable

COMPILED_VARIABLE = "MINIGAN_COMPILED"


@functools.cache
def available() -> bool:
    """Whether the compiled passes can be used: Numba is installed and `$MINIGAN_COMPILED`
    is not "0"."""
    return os.environ.get(COMPILED_VARIABLE, "1") != "0" and importlib.util.find_spec("numba") is not None


def _compiled_at_first_call(loop: Callable[..., None]) -> Callable[..., None]:
    """`loop`, compiled by Numba (nopython) the first time it is called: cached on disk
    beside this file, or where Numba finds room, else compiled afresh in each process."""
    compiled: list[Any] = []

    @functools.wraps(loop)
    def run(*args: Any) -> None:
        if not compiled:
            # Numba colours its messages through colorama, which then writes a terminal reset
            # to stdout at exit, into output that programs read (a benchmark's JSON line)
            os.environ.setdefault("NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING", "1")
            from numba import njit
            try:
                compiled.append(njit(cache=True)(loop))
            except RuntimeError:  # no writable place for the cache
                compiled.append(njit(cache=False)(loop))
        compiled[0](*args)
    run.python = loop  # the loop itself, uncompiled
    return run


# ---- col2im: minigan.im2col.add_windows_by_tile_class / add_windows_by_position

@_compiled_at_first_call
def col2im_by_tile_class(cols: Any, image: Any, row0: int, col0: int, stride_h: int, stride_w: int) -> None:
    """image (N, H, W, C) += each window of cols (N, Ho, Wo, kh, kw, C), the first window at
    image[:, row0, col0], a class of disjoint windows (a = r mod qh, l = t mod qw) at a time:
    every pixel receives its windows in the order of `minigan.im2col.add_windows_by_tile_class`.
    (The whole image and an offset, not a view of it: a contiguous array's loops are 2-3x faster.)"""
    n, ho, wo, kh, kw, c = cols.shape
    qh, qw = -(-kh // stride_h), -(-kw // stride_w)                             # ceil
    for sample in range(n):
        for r in range(min(qh, ho)):
            for t in range(min(qw, wo)):
                for a in range(r, ho, qh):
                    for l in range(t, wo, qw):
                        for i in range(kh):
                            row = row0 + a * stride_h + i
                            for j in range(kw):
                                column = col0 + l * stride_w + j
                                for channel in range(c):
                                    image[sample, row, column, channel] += cols[sample, a, l, i, j, channel]


@_compiled_at_first_call
def col2im_by_position(cols: Any, image: Any, row0: int, col0: int, stride_h: int, stride_w: int) -> None:
    """image (N, H, W, C) += each window of cols (N, Ho, Wo, kh, kw, C), the first window at
    image[:, row0, col0], a kernel position (i, j) at a time, as
    `minigan.im2col.add_windows_by_position`."""
    n, ho, wo, kh, kw, c = cols.shape
    for sample in range(n):
        for i in range(kh):
            for j in range(kw):
                for a in range(ho):
                    row = row0 + a * stride_h + i
                    for l in range(wo):
                        column = col0 + l * stride_w + j
                        for channel in range(c):
                            image[sample, row, column, channel] += cols[sample, a, l, i, j, channel]


# ---- BatchNorm in training mode: minigan.norm.BatchNorm._forward_train / _backward_train.
# NumPy sums an (M, C) array over its rows one row after the other (for C > 1), as these do.

@_compiled_at_first_call
def batchnorm_channel_sums(x2: Any, sums: Any) -> None:
    """sums (C,) = x2 (M, C) summed over its rows, in row order."""
    m, c = x2.shape
    for channel in range(c):
        sums[channel] = x2[0, channel]
    for row in range(1, m):
        for channel in range(c):
            sums[channel] += x2[row, channel]


@_compiled_at_first_call
def batchnorm_centre(x2: Any, mean: Any, x_hat: Any, squares: Any) -> None:
    """x_hat (M, C) = x2 - mean and squares (C,) = sum over rows of x_hat * x_hat."""
    m, c = x2.shape
    for channel in range(c):
        squares[channel] = 0
    for row in range(m):
        for channel in range(c):
            centred = x2[row, channel] - mean[channel]
            x_hat[row, channel] = centred
            squares[channel] += centred * centred


@_compiled_at_first_call
def batchnorm_normalise(x_hat: Any, inv_std: Any, gamma: Any, beta: Any, y: Any) -> None:
    """x_hat (M, C) *= inv_std (in place); y (M, C) = x_hat * gamma + beta."""
    m, c = x_hat.shape
    for row in range(m):
        for channel in range(c):
            scaled = x_hat[row, channel] * inv_std[channel]
            x_hat[row, channel] = scaled
            y[row, channel] = scaled * gamma[channel] + beta[channel]


@_compiled_at_first_call
def batchnorm_gradient_sums(dy2: Any, x_hat: Any, sums: Any) -> None:
    """sums (2, C): row 0 the sum of dy2 (M, C) over its rows, row 1 that of dy2 * x_hat."""
    m, c = dy2.shape
    for channel in range(c):
        sums[0, channel] = dy2[0, channel]
        sums[1, channel] = 0
    for row in range(m):
        for channel in range(c):
            if row:
                sums[0, channel] += dy2[row, channel]
            sums[1, channel] += dy2[row, channel] * x_hat[row, channel]


@_compiled_at_first_call
def batchnorm_input_gradient(x_hat: Any, dy2: Any, slope: Any, shift: Any, scale: Any, dx: Any) -> None:
    """dx (M, C) = ((x_hat * slope + dy2) - shift) * scale, per channel (C,) slope, shift
    and scale: BatchNorm's closed-form input gradient."""
    m, c = x_hat.shape
    for row in range(m):
        for channel in range(c):
            dx[row, channel] = ((x_hat[row, channel] * slope[channel] + dy2[row, channel]) - shift[channel]) \
                * scale[channel]


# ---- activations: minigan.layers.LeakyReLU.forward, ReLU.backward (flat, contiguous arrays)

@_compiled_at_first_call
def leaky_relu_forward(x: Any, slope: Any, one_minus_slope: Any, zero: Any, y: Any, derivative: Any) -> None:
    """y = max(x, slope x) and derivative = [x > 0] (1 - slope) + slope, element by element
    (slope, 1 - slope and zero as scalars of x's dtype, so that nothing is computed wider)."""
    for index in range(x.size):
        value = x[index]
        leaked = value * slope
        y[index] = value if value > leaked else leaked
        derivative[index] = (one_minus_slope if value > 0 else zero) + slope


@_compiled_at_first_call
def relu_backward(dy: Any, y: Any, zero: Any, dx: Any) -> None:
    """dx = dy * [y > 0], element by element (zero a scalar of dy's dtype: dy * 0 keeps
    NumPy's signed zeros and NaNs)."""
    for index in range(dy.size):
        dx[index] = dy[index] if y[index] > 0 else dy[index] * zero
