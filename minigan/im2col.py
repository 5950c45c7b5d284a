"""The column matrix of channels-last images and its adjoint: what both convolutions
(`minigan.conv`) are built from.

`im2col` gathers every kh x kw window of a padded (N, Hp, Wp, C) image into one row of a
matrix (a strided view, `sliding_window_view`, copied once); `col2im`, its adjoint, adds
each row back onto its window (strided adds of disjoint windows, no scatter and no loop
over samples). A whole batch's column matrix is large, so the layers make and use it a chunk
of samples at a time (`sample_chunks`, `col2im_of_product`), each chunk while it is in
the CPU's cache.
"""
from __future__ import annotations

from typing import Any

Pair = tuple[int, int]


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


def col2im(xp: Any, cols: Any, padded_shape: tuple[int, int, int, int], kernel: Pair, stride: Pair,
           out: Any = None) -> Any:
    """The adjoint of `im2col`: adds every row of `cols` back onto its window.

    Args:
        cols: (N * Ho * Wo, kh * kw * C) in im2col's order.
        padded_shape: (N, Hp, Wp, C) of the padded image.
        out: optional (N, Hp, Wp, C) array to write into (overwritten).

    Returns:
        `out`, or a new (N, Hp, Wp, C) array.

    With several channels the windows are added a class of disjoint windows at a time
    (`add_windows_by_tile_class`), in runs of kw * C numbers; with one channel a kernel
    position at a time (`add_windows_by_position`), whose runs are a row of windows: the
    faster of the two in each case (`benchmarks/col2im_orders.py`).
    """
    (kh, kw), (sh, sw) = kernel, stride
    n, hp, wp, c = padded_shape
    ho, wo = window_count(hp, kh, sh), window_count(wp, kw, sw)
    cols = cols.reshape(n, ho, wo, kh, kw, c)
    if out is None:
        out = xp.zeros(padded_shape, dtype=cols.dtype)
    else:
        out[...] = 0
    if c == 1:
        add_windows_by_position(cols, out, stride)
    else:
        add_windows_by_tile_class(xp, cols, out, stride)
    return out


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


def col2im_of_product(xp: Any, rows: Any, matrix: Any, padded_shape: tuple[int, int, int, int],
                      kernel: Pair, stride: Pair, chunk_bytes: int | None) -> Any:
    """col2im(rows @ matrix), a chunk of samples at a time (`sample_chunks`).

    Args:
        rows: (N * Ho * Wo, K), every sample's Ho * Wo rows together.
        matrix: (K, kh * kw * C).

    Returns:
        A new (N, Hp, Wp, C) array.
    """
    n = padded_shape[0]
    per_sample = rows.shape[0] // n
    image = xp.empty(padded_shape, dtype=matrix.dtype)
    for start, stop in sample_chunks(n, per_sample * matrix.shape[1] * matrix.dtype.itemsize, chunk_bytes):
        cols = rows[start * per_sample : stop * per_sample] @ matrix          # (chunk Ho Wo, kh kw C)
        col2im(xp, cols, (stop - start, *padded_shape[1:]), kernel, stride, out=image[start:stop])
    return image


def pad_image(xp: Any, x: Any, padding: Pair, out: Any = None) -> Any:
    """x (N, H, W, C) with `padding` zeros on each side.

    `out`, an optional (N, H + 2 ph, W + 2 pw, C) array whose border is already zero (as a
    buffer reused for one layer's padding stays), receives x in its interior."""
    (ph, pw) = padding
    if ph == pw == 0:
        return x
    if out is None:
        return xp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    n, h, w, _ = x.shape
    out[:, ph : ph + h, pw : pw + w] = x
    return out


def crop_image(x: Any, padding: Pair, size: Pair) -> Any:
    """The (N, H, W, C) interior of a padded image: rows ph..ph+H, columns pw..pw+W."""
    (ph, pw), (h, w) = padding, size
    return x[:, ph : ph + h, pw : pw + w]
