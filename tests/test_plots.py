"""Tests for minigan.plots: every function writes a readable PNG atomically, image grids
put each pixel in its place, and bad inputs fail with clear errors."""

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib.figure  # noqa: E402
import matplotlib.image  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from minigan import plots  # noqa: E402
from minigan.data import GRID25, RING8  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path, min_size=(100, 100)):
    """Check path is a non-blank PNG of at least min_size (height, width); return its gray pixels."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)  # (H, W, 3 or 4) floats in [0, 1]
    assert pixels.ndim == 3 and pixels.shape[0] >= min_size[0] and pixels.shape[1] >= min_size[1]
    gray = pixels[..., :3].mean(axis=2)
    assert gray.var() > 0
    return gray


def history(n=200, keys=("d_loss", "g_loss", "d_real", "d_fake", "gp")):
    """A training history of n steps with random values under keys."""
    rng = np.random.default_rng(0)
    return {"step": list(range(n)), **{key: rng.random(n) for key in keys}}


# ---------------------------------------------------------------- every plot writes a PNG


def test_save_scatter_writes_png_and_returns_its_path(tmp_path):
    samples = RING8.sample(500, np.random.default_rng(0))
    out = plots.save_scatter(str(tmp_path / "ring.png"), samples, RING8.modes, title="ring8", std=RING8.std)
    assert out == tmp_path / "ring.png"
    height, width = read_png(out, min_size=(300, 300)).shape
    assert 0.8 < width / height < 1.2


@pytest.mark.parametrize("count, kwargs", [(300, {}), (300, {"limits": 3.0}), (0, {"modes": GRID25.modes})])
def test_save_scatter_without_modes_or_samples_or_with_fixed_limits(tmp_path, count, kwargs):
    samples = np.random.default_rng(1).standard_normal((count, 2))
    read_png(plots.save_scatter(tmp_path / "s.png", samples, **kwargs))


def test_save_scatter_survives_a_diverged_generator(tmp_path):
    samples = np.array([[np.nan, 0.0], [np.inf, 1.0], [0.5, -0.5]])
    read_png(plots.save_scatter(tmp_path / "nan.png", samples, title="diverged"))


def test_save_scatter_grid_puts_panels_side_by_side(tmp_path):
    rng = np.random.default_rng(0)
    panels = [("plain GAN", rng.standard_normal((400, 2))), ("best", GRID25.sample(400, rng))]
    out = plots.save_scatter_grid(tmp_path / "grid.png", panels, modes=GRID25.modes, std=GRID25.std)
    height, width = read_png(out).shape
    assert width > 1.6 * height


def test_save_loss_curves_draws_one_panel_without_discriminator_outputs(tmp_path):
    both = read_png(plots.save_loss_curves(tmp_path / "both.png", history(), title="run"))
    outputs_only = read_png(plots.save_loss_curves(tmp_path / "outputs.png", history(keys=("d_real",))))
    assert both.shape[0] > 1.5 * outputs_only.shape[0]


def test_save_loss_curves_accepts_a_single_step_and_numpy_arrays(tmp_path):
    one_step = {"step": np.array([0]), "d_loss": np.array([0.7]), "g_loss": np.array([0.9])}
    read_png(plots.save_loss_curves(tmp_path / "one.png", one_step))


def test_save_line_plot_log_log(tmp_path):
    sizes = [32, 64, 128, 256, 512]
    series = {"numpy": (sizes, [900, 700, 400, 200, 100]), "cupy": (sizes, [400, 400, 390, 380, 350])}
    out = plots.save_line_plot(tmp_path / "scaling.png", series, "batch size", "steps / s",
                               title="scaling", logx=True, logy=True,
                               styles={"cupy": {"color": "C0", "linestyle": "--"}})
    read_png(out, min_size=(400, 600))
    read_png(plots.save_line_plot(tmp_path / "linear.png", {"a": ([0, 1, 2], [-1, 0, 3])}, "x", "y"))


# ---------------------------------------------------------------- image grid content


def grid_pixels(path, canvas_shape):
    """Sample a title-less image-grid PNG at the centre of every canvas pixel."""
    gray = read_png(path, min_size=(1, 1))
    rows = ((np.arange(canvas_shape[0]) + 0.5) * gray.shape[0] / canvas_shape[0]).astype(int)
    cols = ((np.arange(canvas_shape[1]) + 0.5) * gray.shape[1] / canvas_shape[1]).astype(int)
    return gray[np.ix_(rows, cols)]


@pytest.mark.parametrize("columns, expected_layout",
                         [(2, [[0, 1], [2, 3]]), (4, [[0, 1, 2, 3]]), (1, [[0], [1], [2], [3]])])
def test_save_image_grid_tiles_images_row_by_row(tmp_path, columns, expected_layout):
    height, width = 5, 7
    images = np.repeat(np.arange(4)[:, None] / 3, height * width, axis=1)  # image i is i/3 everywhere
    out = plots.save_image_grid(tmp_path / "grid.png", images, (height, width), columns=columns)
    layout = np.array(expected_layout)
    pixels = grid_pixels(out, (layout.shape[0] * (height + 1) + 1, layout.shape[1] * (width + 1) + 1))
    for (r, c), i in np.ndenumerate(layout):
        tile = pixels[1 + r * (height + 1):(r + 1) * (height + 1), 1 + c * (width + 1):(c + 1) * (width + 1)]
        np.testing.assert_allclose(tile, i / 3, atol=0.01)


@settings(max_examples=12)
@given(count=st.integers(1, 7), height=st.integers(1, 5), width=st.integers(1, 5),
       columns=st.none() | st.integers(1, 4), seed=st.integers(0, 2**16))
def test_save_image_grid_puts_every_pixel_in_its_place(tmp_path_factory, count, height, width, columns, seed):
    images = np.random.default_rng(seed).random((count, height * width))
    out = plots.save_image_grid(tmp_path_factory.mktemp("grid") / "g.png", images, (height, width), columns=columns)
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = -(-count // columns)
    expected = np.ones((rows * (height + 1) + 1, columns * (width + 1) + 1))  # white gaps
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = 1 + r * (height + 1), 1 + c * (width + 1)
        expected[top:top + height, left:left + width] = image.reshape(height, width)
    np.testing.assert_allclose(grid_pixels(out, expected.shape), expected, atol=0.01)


def test_save_image_grid_with_title_and_values_outside_unit_range(tmp_path):
    images = np.linspace(-1, 2, 9 * 16).reshape(9, 16)  # a 3 x 3 grid: a square canvas
    out = plots.save_image_grid(tmp_path / "titled.png", images, (4, 4), title="step 100")
    height, width = read_png(out).shape
    assert height > width  # the title adds a band above the grid


def test_save_image_grid_is_fast_for_many_images(tmp_path):
    images = np.random.default_rng(0).random((225, 28 * 28))
    read_png(plots.save_image_grid(tmp_path / "many.png", images, (28, 28)), min_size=(500, 500))


# ---------------------------------------------------------------- files


def test_parent_directories_are_created(tmp_path):
    out = plots.save_scatter(tmp_path / "a" / "b" / "c.png", np.zeros((3, 2)))
    assert out.is_file()


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path, monkeypatch):
    out = tmp_path / "grid.png"
    plots.save_image_grid(out, np.zeros((4, 4)), (2, 2))
    plots.save_image_grid(out, np.ones((4, 4)), (2, 2))  # overwriting works
    plots.save_line_plot(tmp_path / "line.png", {"a": ([1, 2], [3, 4])}, "x", "y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "line.png"]
    before = out.read_bytes()

    def fail_half_way(self, file, **kwargs):
        file.write(PNG_SIGNATURE)
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", fail_half_way)
    with pytest.raises(OSError, match="disk full"):
        plots.save_image_grid(out, np.zeros((4, 4)), (2, 2))
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "line.png"]


def test_missing_matplotlib_raises_a_helpful_import_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'minigan\[plots\]'"):
        plots.save_scatter(tmp_path / "s.png", np.zeros((3, 2)))


# ---------------------------------------------------------------- bad inputs

POINTS = np.zeros((5, 2))


@pytest.mark.parametrize("call, message", [
    (lambda p: plots.save_scatter(p, np.zeros((5, 3))), r"samples must have shape \(N, 2\), got \(5, 3\)"),
    (lambda p: plots.save_scatter(p, np.zeros(10)), r"samples must have shape \(N, 2\)"),
    (lambda p: plots.save_scatter(p, POINTS, modes=np.zeros((4, 3))), r"modes must have shape \(N, 2\)"),
    (lambda p: plots.save_scatter(p, POINTS, RING8.modes, std=0.0), "std must be positive"),
    (lambda p: plots.save_scatter(p, POINTS, limits=-1.0), "limits must be positive"),
    (lambda p: plots.save_scatter_grid(p, []), "panels is empty"),
    (lambda p: plots.save_scatter_grid(p, [("ok", POINTS), ("bad", np.zeros((5, 1)))]),
     r"samples of 'bad' must have shape \(N, 2\)"),
    (lambda p: plots.save_image_grid(p, np.zeros((4, 15)), (4, 4)), r"\(N, 16\).*got \(4, 15\)"),
    (lambda p: plots.save_image_grid(p, np.zeros((4, 4, 4)), (4, 4)), r"images must have shape \(N, H\*W\)"),
    (lambda p: plots.save_image_grid(p, np.zeros((0, 16)), (4, 4)), "N >= 1"),
    (lambda p: plots.save_image_grid(p, np.zeros((4, 16)), (4, 0)), "image_shape must be two positive integers"),
    (lambda p: plots.save_image_grid(p, np.zeros((4, 16)), (2, 2, 4)), "image_shape must be two positive integers"),
    (lambda p: plots.save_image_grid(p, np.zeros((4, 16)), (4, 4), columns=0), "columns must be an integer >= 1"),
    (lambda p: plots.save_loss_curves(p, {"d_loss": [1.0]}), "history needs a 'step' key"),
    (lambda p: plots.save_loss_curves(p, {"step": [0, 1], "d_loss": [1.0]}), "same length"),
    (lambda p: plots.save_loss_curves(p, {"step": [], "d_loss": []}), "history is empty"),
    (lambda p: plots.save_loss_curves(p, {"step": [0], "gp": [1.0]}), "nothing to plot"),
    (lambda p: plots.save_loss_curves(p, {"step": [0], "d_loss": [[1.0]]}), "one-dimensional"),
    (lambda p: plots.save_line_plot(p, {}, "x", "y"), "series is empty"),
    (lambda p: plots.save_line_plot(p, {"a": ([1, 2], [1])}, "x", "y"), "same nonzero length, got 2 and 1"),
    (lambda p: plots.save_line_plot(p, {"a": ([0, 1], [1, 2])}, "x", "y", logx=True),
     "log-scale x axis needs positive values"),
    (lambda p: plots.save_line_plot(p, {"a": ([1, 2], [-1, 2])}, "x", "y", logy=True),
     "log-scale y axis needs positive values"),
])
def test_bad_inputs_raise_clear_value_errors_and_write_nothing(tmp_path, call, message):
    with pytest.raises(ValueError, match=message):
        call(tmp_path / "bad.png")
    assert list(tmp_path.iterdir()) == []
