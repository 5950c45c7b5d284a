"""The column matrix of channels-last images and its adjoint, in bands: what both
convolutions (`minigan.conv`) are built from.

A convolution gathers every kh x kw window of its (N, H, W, C) input into one row of a
column matrix (im2col: one strided view of the windows, copied once) and multiplies
it by the weights; its adjoint (col2im) adds each row back onto its window, by strided adds
of disjoint windows, with no scatter and no loop over samples (`add_windows`). The layers do
not pad: `bands` splits a padded convolution's output into bands whose windows all use the
same part of the kernel and lie inside the image, and `gather` / `scatter_add` are im2col /
col2im of one band, so that no product multiplies the padding's zeros. A whole batch's
column matrix is large, so the layers make and use it a chunk of samples at a time
(`sample_chunks`), each chunk while it is in the CPU's cache.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from .cpu_kernels import col2im_by_position, col2im_by_tile_class

Pair = tuple[int, int]


def window_count(size: int, kernel: int, stride: int) -> int:
    """Number of kernel positions along an axis of `size` (padding included)."""
    return (size - kernel) // stride + 1


def add_windows(xp: Any, cols: Any, image: Any, stride: Pair, start: Pair = (0, 0), compiled: bool = False) -> None:
    """image (N, H, W, C) += each window of cols (N, Ho, Wo, kh, kw, C), the first window at
    image[:, start[0], start[1]] (col2im, onto `image`).

    With several channels the windows are added a class of disjoint windows at a time
    (`add_windows_by_tile_class`), in runs of kw * C numbers; with one channel a kernel
    position at a time (`add_windows_by_position`), whose runs are a row of windows: the
    faster of the two in each case (`benchmarks/col2im_orders.py`). `compiled`: by the
    same order's loop in `minigan.cpu_kernels` (NumPy arrays; the same bits, one loop)."""
    if compiled:
        (col2im_by_position if cols.shape[-1] == 1 else col2im_by_tile_class)(cols, image, *start, *stride)
    elif cols.shape[-1] == 1:
        add_windows_by_position(cols, image[:, start[0]:, start[1]:], stride)
    else:
        add_windows_by_tile_class(xp, cols, image[:, start[0]:, start[1]:], stride)


def add_windows_by_position(cols: Any, out: Any, stride: Pair) -> None:
    """out += cols' windows, one kernel position (i, j) at a time: kh kw strided adds of
    (N, Ho, Wo, C) each."""
    _, ho, wo, kh, kw, _ = cols.shape
    (sh, sw) = stride
    for i in range(kh):
        for j in range(kw):
            out[:, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw] += cols[:, :, :, i, j]


def add_windows_by_tile_class(xp: Any, cols: Any, out: Any, stride: Pair) -> None:
    """out += cols' windows, one class of disjoint windows at a time.

    Windows qh = ceil(kh / sh) apart along the height (qw along the width) do not overlap,
    so the windows (a, l) with a = r mod qh and l = t mod qw are disjoint tiles of `out`,
    and one add through a strided view (N, tiles down, kh, tiles across, kw, C) moves all of
    them: qh qw adds in all, instead of kh kw."""
    _, ho, wo, kh, kw, c = cols.shape
    (sh, sw) = stride
    qh, qw = -(-kh // sh), -(-kw // sw)                                         # ceil
    n_stride, h_stride, w_stride, c_stride = out.strides
    for r in range(min(qh, ho)):
        for t in range(min(qw, wo)):
            tiles = cols[:, r::qh, t::qw]                                       # (N, down, across, kh, kw, C)
            down, across = tiles.shape[1], tiles.shape[2]
            view = xp.lib.stride_tricks.as_strided(
                out[:, r * sh :, t * sw :], shape=(out.shape[0], down, kh, across, kw, c),
                strides=(n_stride, qh * sh * h_stride, h_stride, qw * sw * w_stride, w_stride, c_stride))
            view += tiles.transpose(0, 1, 3, 2, 4, 5)


def sample_chunks(samples: int, sample_bytes: int, chunk_bytes: int | None) -> list[tuple[int, int]]:
    """[(start, stop), ...] covering range(samples) in as few chunks as keep each within
    `chunk_bytes` of temporaries at `sample_bytes` a sample (a chunk has at least one
    sample), their sizes differing by at most one; one chunk when `chunk_bytes` is None.

    A convolution's column matrix for a whole batch is large (at batch 256, 64 channels and
    a 4x4 kernel on 7x7 windows, 51 MB: out of every cache, and fresh pages from the system
    on each step); made and used a chunk at a time it stays in cache. A product over a
    chunk's rows equals those rows of the whole product up to rounding (BLAS may order a
    sum differently for fewer rows); chunks depend only on the shapes, so a step repeats
    bit for bit."""
    per_chunk = samples if chunk_bytes is None else max(1, chunk_bytes // sample_bytes)
    count = -(-samples // per_chunk)                                            # ceil
    bounds = [samples * index // count for index in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


class Band(NamedTuple):
    """Output rows `rows` x columns `cols` of a convolution whose windows all use the kernel's
    rows `kernel_rows` and columns `kernel_cols` (half-open ranges) and no padding: the image
    row and column under the band's first window's first used tap is `start`."""

    rows: Pair
    cols: Pair
    kernel_rows: Pair
    kernel_cols: Pair
    start: Pair

    @property
    def size(self) -> Pair:
        """(rows, columns) of the band."""
        return self.rows[1] - self.rows[0], self.cols[1] - self.cols[0]

    @property
    def kernel(self) -> Pair:
        """(rows, columns) of the part of the kernel the band uses."""
        return self.kernel_rows[1] - self.kernel_rows[0], self.kernel_cols[1] - self.kernel_cols[0]


def axis_bands(outputs: int, size: int, kernel: int, stride: int, padding: int) -> list[tuple[Pair, Pair]]:
    """[((first, stop) outputs, (first, stop) taps)]: runs of output positions along one axis
    whose windows have the same taps inside the image of `size` (the others fall on padding)."""
    runs: list[tuple[Pair, Pair]] = []
    for position in range(outputs):
        taps = (max(0, padding - position * stride), min(kernel, size + padding - position * stride))
        if runs and runs[-1][1] == taps:
            runs[-1] = ((runs[-1][0][0], position + 1), taps)
        else:
            runs.append(((position, position + 1), taps))
    return runs


def bands(outputs: Pair, size: Pair, kernel: Pair, stride: Pair, padding: Pair) -> list[Band]:
    """A padded convolution of an image of `size` (H, W), with `outputs` (Ho, Wo) positions, as
    bands of outputs with no tap on the padding (`Band`): the convolution is the sum over the
    bands of unpadded convolutions with parts of the kernel. Outputs whose windows lie wholly
    on the padding are in no band. For k4 s2 p1 at 14x14: 3 x 3 bands, the interior 5x5 with
    the whole kernel, and 26 x 26 taps per output channel and sample against 28 x 28 over the
    padded image (14% fewer multiplications)."""
    (sh, sw), (ph, pw) = stride, padding
    return [Band(rows, cols, taps_h, taps_w, (rows[0] * sh + taps_h[0] - ph, cols[0] * sw + taps_w[0] - pw))
            for rows, taps_h in axis_bands(outputs[0], size[0], kernel[0], sh, ph) if taps_h[1] > taps_h[0]
            for cols, taps_w in axis_bands(outputs[1], size[1], kernel[1], sw, pw) if taps_w[1] > taps_w[0]]


def gather(xp: Any, image: Any, band: Band, stride: Pair, out: Any = None) -> Any:
    """im2col of one band: its windows of the unpadded image (N, H, W, C) as rows.

    Args:
        out: optional (N, bh, bw, ki, kj, C) array to write into (reused between steps).

    Returns:
        (N bh bw, ki kj C), in the (i, j, c) order of the kernel part W[i0:i1, j0:j1].
    """
    (bh, bw), (ki, kj), (r0, c0), (sh, sw) = band.size, band.kernel, band.start, stride
    n, c = image.shape[0], image.shape[3]
    n_stride, h_stride, w_stride, c_stride = image.strides
    # every window of the band (they lie inside the image: `bands`), as one strided view
    windows = xp.lib.stride_tricks.as_strided(image[:, r0:, c0:], shape=(n, bh, bw, ki, kj, c),
                                              strides=(n_stride, sh * h_stride, sw * w_stride, h_stride,
                                                       w_stride, c_stride))
    if out is None:
        out = xp.empty((n, bh, bw, ki, kj, c), dtype=image.dtype)
    out[...] = windows
    return out.reshape(n * bh * bw, ki * kj * c)


def scatter_add(xp: Any, rows: Any, image: Any, band: Band, stride: Pair, compiled: bool = False) -> None:
    """The adjoint of `gather`: image (N, H, W, C) += each row of `rows` (N bh bw, ki kj C)
    added onto its window (`add_windows`, compiled or not)."""
    (bh, bw), (ki, kj), (r0, c0) = band.size, band.kernel, band.start
    n, c = image.shape[0], image.shape[3]
    add_windows(xp, rows.reshape(n, bh, bw, ki, kj, c), image, stride, (r0, c0), compiled)


def band_rows(xp: Any, images: Any, band: Band) -> Any:
    """The band's positions of images (N, Ho, Wo, C) as contiguous rows (N bh bw, C)."""
    (h0, h1), (w0, w1) = band.rows, band.cols
    return xp.ascontiguousarray(images[:, h0:h1, w0:w1]).reshape(-1, images.shape[3])
