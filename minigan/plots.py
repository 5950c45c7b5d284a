"""PNG output: 2-D scatter plots with the true modes, image grids, loss curves, line plots.

This module owns every picture minigan draws. matplotlib (the optional ``plots`` extra)
is imported on first use with the display-free "Agg" backend. Every function takes host
NumPy arrays, writes one PNG atomically (a temporary file in the same directory, then
``os.replace``), creating the parent directory if needed, and returns the path written.
"""

from __future__ import annotations

import contextlib
import math
import os
import pathlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .files import atomic_write

PathLike = str | os.PathLike[str]

_DPI = 100
_PANEL_INCHES = 4.5  # side of one scatter panel
_GRID_MIN_PIXELS = 800  # small image grids are scaled up by whole pixels to about this size
_GRID_GAP = 1.0  # the 1-pixel lines between (and around) the tiles are white
_TITLE_INCHES = 0.4


def require_matplotlib() -> Any:
    """The matplotlib module; ImportError with the install command when it is missing."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("minigan.plots needs matplotlib: pip install 'minigan[plots]'") from exc
    return matplotlib


def _pyplot() -> Any:
    """Import matplotlib.pyplot with the Agg backend forced, so no display is needed."""
    require_matplotlib().use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def _figure(path: PathLike, figsize: tuple[float, float], nrows: int = 1, ncols: int = 1,
            **subplots_kwargs: Any) -> Iterator[tuple[Any, np.ndarray]]:
    """Yield a new figure and its (nrows, ncols) axes; on exit save it to path as PNG and close it.

    The PNG is written atomically (`minigan.files.atomic_write`): readers never see a
    half-written file.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, **subplots_kwargs)
    try:
        yield fig, axes
        atomic_write(path, lambda file: fig.savefig(file, format="png", dpi=_DPI))
    finally:
        plt.close(fig)


def _points(name: str, array: np.ndarray) -> np.ndarray:
    """Return array as float64, checking that it holds 2-D points, shape (N, 2)."""
    points = np.asarray(array, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {points.shape}")
    return points


def _half_width(samples: Sequence[np.ndarray], modes: np.ndarray | None, std: float | None) -> float:
    """Half the side of a square view centred on 0: every mode with a margin, else every sample."""
    if modes is not None:
        half = 1.5 * np.abs(modes).max() + (3 * std if std is not None else 0.0)
    else:
        points = np.abs(np.concatenate(samples))
        half = 1.1 * points[np.isfinite(points)].max(initial=0.0)
    return float(half) if half > 0 else 1.0


def _draw_scatter(ax: Any, samples: np.ndarray, modes: np.ndarray | None, std: float | None,
                  half_width: float, title: str) -> None:
    """Draw one scatter panel: samples as faint dots, modes as red crosses with 3*std circles."""
    from matplotlib.patches import Circle

    ax.scatter(samples[:, 0], samples[:, 1], s=4, alpha=0.35, linewidths=0,
               color="tab:blue", label="samples")
    if modes is not None:
        if std is not None:
            for i, mode in enumerate(modes):
                ax.add_patch(Circle(tuple(mode), 3 * std, fill=False, color="tab:red", alpha=0.6,
                                    linewidth=0.8, label="3 std zone" if i == 0 else None))
        ax.scatter(modes[:, 0], modes[:, 1], marker="x", s=30, linewidths=1.2, color="red",
                   label="modes")
    ax.set_xlim(-half_width, half_width)
    ax.set_ylim(-half_width, half_width)
    ax.set_aspect("equal")
    ax.grid(alpha=0.2)
    ax.set_title(title)


def save_scatter(path: PathLike, samples: np.ndarray, modes: np.ndarray | None = None,
                 title: str = "", std: float | None = None, limits: float | None = None) -> pathlib.Path:
    """Save 2-D samples as a scatter plot, with the true modes of the mixture if given.

    Args:
        path: the PNG to write.
        samples: points, shape (N, 2).
        modes: centres of the mixture, shape (K, 2), drawn as red crosses.
        title: title above the plot.
        std: standard deviation of each mode; draws a circle of radius 3*std around
            each mode (PacGAN's high-quality zone).
        limits: both axes span [-limits, limits]; by default 1.5 times the extent of
            the modes (1.1 times that of the samples when no modes are given).
    """
    return save_scatter_grid(path, [(title, samples)], modes=modes, std=std, limits=limits)


def save_scatter_grid(path: PathLike, panels: Sequence[tuple[str, np.ndarray]],
                      modes: np.ndarray | None = None, std: float | None = None,
                      limits: float | None = None) -> pathlib.Path:
    """Save several titled scatter panels side by side, all with the same axes.

    Args:
        path: the PNG to write.
        panels: (title, samples) pairs, samples of shape (N, 2), drawn left to right.
        modes, std, limits: as in ``save_scatter``, shared by every panel.
    """
    if not panels:
        raise ValueError("panels is empty: give at least one (title, samples) pair")
    titles = [title for title, _ in panels]
    samples = [_points(f"samples of {title!r}" if title else "samples", s) for title, s in panels]
    modes = None if modes is None else _points("modes", modes)
    if std is not None and not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    if limits is not None and not limits > 0:
        raise ValueError(f"limits must be positive, got {limits}")
    half_width = limits if limits is not None else _half_width(samples, modes, std)
    legend_inches = 0.4 if modes is not None else 0.0
    figsize = (_PANEL_INCHES * len(panels), _PANEL_INCHES + legend_inches)
    with _figure(path, figsize, ncols=len(panels), layout="constrained") as (_, axes):
        for ax, title, points in zip(axes[0], titles, samples):
            _draw_scatter(ax, points, modes, std, half_width, title)
        if modes is not None:  # one legend, below the first panel
            axes[0, 0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncols=3,
                              frameon=False, markerscale=2)
    return pathlib.Path(path)


def _tile(images: np.ndarray, image_shape: tuple[int, int], columns: int) -> np.ndarray:
    """Tile images row-major into one 2-D canvas with 1-pixel gaps between and around them."""
    height, width = image_shape
    count = len(images)
    rows = -(-count // columns)
    cells = np.full((rows * columns, height + 1, width + 1), _GRID_GAP)  # a gap below and right of each
    cells[:count, :height, :width] = images.reshape(count, height, width)
    canvas = cells.reshape(rows, columns, height + 1, width + 1).transpose(0, 2, 1, 3)
    canvas = canvas.reshape(rows * (height + 1), columns * (width + 1))
    return np.pad(canvas, ((1, 0), (1, 0)), constant_values=_GRID_GAP)  # the gap above and left


def save_image_grid(path: PathLike, images: np.ndarray, image_shape: tuple[int, int],
                    columns: int | None = None, title: str = "") -> pathlib.Path:
    """Save flattened grayscale images tiled into a grid, row by row.

    Small grids are scaled up by a whole number of screen pixels per image pixel, so
    every image pixel stays a sharp square.

    Args:
        path: the PNG to write.
        images: shape (N, H*W), values in [0, 1] (values outside are clipped).
        image_shape: (H, W) of one image.
        columns: images per row; by default ceil(sqrt(N)), a roughly square grid.
        title: title above the grid.
    """
    if len(image_shape) != 2 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in image_shape):
        raise ValueError(f"image_shape must be two positive integers (H, W), got {image_shape!r}")
    height, width = (int(d) for d in image_shape)
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 2 or len(images) == 0 or images.shape[1] != height * width:
        raise ValueError(f"images must have shape (N, H*W) = (N, {height * width}) with N >= 1 "
                         f"for image_shape {(height, width)}, got {images.shape}")
    columns = math.ceil(math.sqrt(len(images))) if columns is None else columns
    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"columns must be an integer >= 1, got {columns!r}")
    canvas = _tile(images, (height, width), int(columns))
    scale = max(1, math.ceil(_GRID_MIN_PIXELS / max(canvas.shape)))
    canvas_inches = (canvas.shape[1] * scale / _DPI, canvas.shape[0] * scale / _DPI)
    title_inches = _TITLE_INCHES if title else 0.0
    figsize = (canvas_inches[0], canvas_inches[1] + title_inches)
    with _figure(path, figsize) as (_, axes):
        ax = axes[0, 0]
        ax.set_position((0.0, 0.0, 1.0, canvas_inches[1] / figsize[1]))  # the canvas fills the width
        ax.imshow(canvas, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(title)
    return pathlib.Path(path)


def _curve(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return values as a 1-D float64 array, with a clear error otherwise."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def save_loss_curves(path: PathLike, history: Mapping[str, Sequence[float] | np.ndarray],
                     title: str = "") -> pathlib.Path:
    """Save training curves: the losses on top, D(x) and D(G(z)) below when recorded.

    Each curve is drawn faint as recorded and solid as a moving average over about a
    fiftieth of the run, so trends stay readable through the noise of single steps.

    Args:
        path: the PNG to write.
        history: equal-length sequences under "step" and any of "d_loss", "g_loss"
            (every key ending in "loss" is drawn, and a VAE's "recon" and "kl"), "d_real",
            "d_fake"; other keys (such as "gp") are ignored.
        title: title above the panels.
    """
    if "step" not in history:
        raise ValueError(f"history needs a 'step' key, got keys {sorted(history)}")
    curves = {key: _curve(f"history[{key!r}]", values) for key, values in history.items()}
    steps = curves["step"]
    if len(steps) == 0:
        raise ValueError("history is empty: no steps recorded")
    lengths = {key: len(values) for key, values in curves.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"history sequences must all have the same length, got {lengths}")
    losses = [(key, key) for key in curves if key.endswith("loss") or key in ("recon", "kl")]
    outputs = [(key, label) for key, label in (("d_real", "D(x)"), ("d_fake", "D(G(z))")) if key in curves]
    panels = [(named, ylabel) for named, ylabel in ((losses, "loss"), (outputs, "D output")) if named]
    if not panels:
        raise ValueError(f"history has nothing to plot: no key ends in 'loss', no 'recon' or 'kl', "
                         f"and there is no 'd_real' or 'd_fake', got keys {sorted(history)}")
    window = max(1, len(steps) // 50)
    kernel = np.ones(window) / window
    with _figure(path, (8.0, 0.5 + 3.0 * len(panels)), nrows=len(panels), sharex=True,
                 layout="constrained") as (fig, axes):
        for ax, (named, ylabel) in zip(axes[:, 0], panels):
            for key, label in named:
                (raw,) = ax.plot(steps, curves[key], linewidth=0.8, alpha=0.3)
                ax.plot(steps[window - 1:], np.convolve(curves[key], kernel, mode="valid"),
                        color=raw.get_color(), linewidth=1.5, label=label)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(loc="best")
        axes[0, 0].set_title(f"faint: every step, solid: moving average over {window} steps", fontsize=9)
        axes[-1, 0].set_xlabel("step")
        if title:
            fig.suptitle(title)
    return pathlib.Path(path)


def _label_log_axis(axis: Any, ticks: np.ndarray | None) -> None:
    """Label a log-scale axis with plain numbers (200, not 2x10^2), at ticks if few enough."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    if ticks is not None and len(ticks) <= 12:  # e.g. the batch sizes of a scaling run
        axis.set_ticks(ticks)
        axis.set_minor_formatter(NullFormatter())
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def save_line_plot(path: PathLike, series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                   xlabel: str, ylabel: str, title: str = "", logx: bool = False,
                   logy: bool = False, styles: Mapping[str, Mapping[str, Any]] | None = None) -> pathlib.Path:
    """Save named (x, y) series as lines with markers, one colour each, on shared axes.

    Args:
        path: the PNG to write.
        series: name -> (x values, y values) of equal, nonzero length.
        xlabel, ylabel: the axis labels.
        title: title above the plot.
        logx, logy: log-scale axes (their values must then be positive).
        styles: optional matplotlib line options per series name, e.g.
            {"color": "C1", "linestyle": "--"}, to pair related series.
    """
    if not series:
        raise ValueError("series is empty: give at least one name -> (x, y)")
    lines = {}
    for name, (x, y) in series.items():
        x, y = _curve(f"x of series {name!r}", x), _curve(f"y of series {name!r}", y)
        if len(x) == 0 or len(x) != len(y):
            raise ValueError(f"series {name!r}: x and y must have the same nonzero length, "
                             f"got {len(x)} and {len(y)}")
        for values, axis, log in ((x, "x", logx), (y, "y", logy)):
            if log and not np.all(values > 0):
                raise ValueError(f"series {name!r}: a log-scale {axis} axis needs positive values, "
                                 f"got minimum {values.min()}")
        lines[name] = (x, y)
    with _figure(path, (7.0, 5.0), layout="constrained") as (_, axes):
        ax = axes[0, 0]
        for name, (x, y) in lines.items():
            ax.plot(x, y, **{"marker": "o", "markersize": 4, "linewidth": 1.5, **(styles or {}).get(name, {})},
                    label=name)
        if logx:
            ax.set_xscale("log")
            _label_log_axis(ax.xaxis, np.unique(np.concatenate([x for x, _ in lines.values()])))
        if logy:
            ax.set_yscale("log")
            _label_log_axis(ax.yaxis, None)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both" if logx or logy else "major")
        ax.legend(loc="best")
    return pathlib.Path(path)
