"""Training data for minigan.

This module owns every source of real samples the library trains on:

* the 2-D Gaussian mixtures of PacGAN (Lin et al. 2018), ``RING8`` and ``GRID25``;
* image data sets: scikit-learn's 8x8 ``digits`` and MNIST-style IDX files
  (MNIST or Fashion-MNIST), with a strict IDX parser that fails with clear
  ``DataError`` messages;
* ``BatchIterator``, endless reshuffled mini-batches whose content depends only
  on ``(seed, step)`` so that resumed training sees exactly the same batches.

Only NumPy is needed at import time; scikit-learn is imported by ``digits``.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

DEFAULT_IDX_DIR = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


class DataError(ValueError):
    """A data file is missing or malformed."""


@dataclass(frozen=True, eq=False)
class Mixture2D:
    """A mixture of equally weighted isotropic 2-D Gaussians sharing one std."""

    name: str
    modes: np.ndarray
    std: float

    def __post_init__(self) -> None:
        modes = np.array(self.modes, dtype=np.float64)
        if modes.ndim != 2 or modes.shape[1] != 2 or len(modes) == 0:
            raise ValueError(f"{self.name}: modes must have shape (K, 2) with K >= 1, got {modes.shape}")
        if not self.std > 0:
            raise ValueError(f"{self.name}: std must be positive, got {self.std}")
        modes.setflags(write=False)
        object.__setattr__(self, "modes", modes)

    def sample(self, n: int, rng: np.random.Generator, dtype: npt.DTypeLike = np.float64) -> np.ndarray:
        """Draw samples, each from a uniformly chosen mode plus N(0, std^2) noise.

        Args:
            n: number of samples, at least 1.
            rng: the random generator to draw from.
            dtype: floating dtype of the result.

        Returns:
            Array of shape (n, 2).
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"{self.name}: n must be an integer >= 1, got {n!r}")
        which = rng.integers(len(self.modes), size=n)
        points = self.modes[which] + self.std * rng.standard_normal((n, 2))
        return points.astype(dtype, copy=False)


_ANGLES = 2 * np.pi * np.arange(8) / 8
RING8 = Mixture2D("ring8", np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1), std=0.01)
_GRID_AXIS = np.arange(-4.0, 5.0, 2.0)
GRID25 = Mixture2D("grid25", np.array([(x, y) for x in _GRID_AXIS for y in _GRID_AXIS]), std=0.05)
MIXTURES = {"ring8": RING8, "grid25": GRID25}


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A labelled image data set with flattened images scaled to [0, 1]."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int]
    num_classes: int


def digits(test_fraction: float = 0.2, seed: int = 0) -> ImageDataset:
    """Load scikit-learn's 8x8 handwritten digits, split by a seeded permutation.

    Args:
        test_fraction: share of the 1797 images put in the test split, in (0, 1).
        seed: seed of the permutation deciding the split.

    Returns:
        The data set, float32 pixels in [0, 1] and int64 labels.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("the digits data set needs scikit-learn: pip install scikit-learn") from exc
    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    n_test = min(max(round(len(x) * test_fraction), 1), len(x) - 1)
    order = np.random.default_rng(seed).permutation(len(x))
    test, train = order[:n_test], order[n_test:]
    return ImageDataset("digits", x[train], y[train], x[test], y[test], (8, 8), 10)


def resolve_data_dir(data_dir: str | None) -> pathlib.Path:
    """Pick the IDX directory: the argument, else $MINIGAN_DATA, else the default.

    Args:
        data_dir: explicit directory, or None.

    Returns:
        The directory to read IDX files from.
    """
    if data_dir:
        return pathlib.Path(data_dir)
    return pathlib.Path(os.environ.get("MINIGAN_DATA") or DEFAULT_IDX_DIR)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse one unsigned-byte IDX file, gzipped or plain.

    Args:
        path: the file; it is gunzipped if it ends in .gz or starts with 1f 8b.

    Returns:
        A uint8 array with the shape given in the file header.
    """
    path = pathlib.Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc})") from None
    if path.suffix == ".gz" or raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt gzip data ({exc})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DataError(f"{path}: bad magic, not an IDX file (header {raw[:4].hex() or 'empty'})")
    type_code, ndim = raw[2], raw[3]
    if type_code != _IDX_UBYTE:
        raise DataError(f"{path}: unsupported IDX type code 0x{type_code:02x}, only 0x08 (unsigned byte) is supported")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares zero dimensions")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{path}: truncated header, {len(raw)} bytes for {ndim} dimensions")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header_len + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "trailing bytes"
        raise DataError(f"{path}: {problem}, file has {len(raw)} bytes but header shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(shape).copy()


def _find_idx_file(directory: pathlib.Path, name: str) -> pathlib.Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def idx(data_dir: str | None = None) -> ImageDataset:
    """Load MNIST or Fashion-MNIST from the four standard IDX files.

    Args:
        data_dir: directory holding the files; see ``resolve_data_dir``.

    Returns:
        The data set "idx", float32 pixels in [0, 1] and int64 labels.
    """
    directory = resolve_data_dir(data_dir)
    paths = {key: _find_idx_file(directory, name) for key, name in IDX_FILES.items()}
    missing = [IDX_FILES[key] for key, path in paths.items() if path is None]
    if missing:
        hint = "pass --data-dir or set $MINIGAN_DATA to a directory holding them"
        if directory == pathlib.Path(DEFAULT_IDX_DIR):
            hint = f"`apt-get install dataset-fashion-mnist` provides them, or {hint}"
        raise DataError(
            f"{directory}: missing IDX files {', '.join(missing)}; expected "
            f"{', '.join(IDX_FILES.values())} (each optionally .gz) in {directory}; {hint}"
        )
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        image_path, label_path = paths[f"x_{split}"], paths[f"y_{split}"]
        if images.ndim != 3:
            raise DataError(f"{image_path}: images must be 3-D (count, rows, cols), got shape {images.shape}")
        if labels.ndim != 1:
            raise DataError(f"{label_path}: labels must be 1-D, got shape {labels.shape}")
        if len(images) != len(labels):
            raise DataError(f"{label_path}: label count {len(labels)} does not match image count {len(images)}")
        if labels.size and labels.max() >= 10:
            raise DataError(f"{label_path}: label {labels.max()} out of range, labels must be < 10")
    image_shape = arrays["x_train"].shape[1:]
    if arrays["x_test"].shape[1:] != image_shape:
        raise DataError(f"{paths['x_test']}: image size {arrays['x_test'].shape[1:]} differs from training {image_shape}")

    def flat(images: np.ndarray) -> np.ndarray:
        return (images.reshape(len(images), -1) / np.float32(255)).astype(np.float32, copy=False)

    return ImageDataset(
        "idx",
        flat(arrays["x_train"]),
        arrays["y_train"].astype(np.int64),
        flat(arrays["x_test"]),
        arrays["y_test"].astype(np.int64),
        (int(image_shape[0]), int(image_shape[1])),
        10,
    )


def load_dataset(name: str, data_dir: str | None = None, seed: int = 0) -> ImageDataset:
    """Load an image data set by name.

    Args:
        name: "digits" or "idx".
        data_dir: IDX directory, used by "idx" only.
        seed: split seed, used by "digits" only.

    Returns:
        The loaded data set.
    """
    if name == "digits":
        return digits(seed=seed)
    if name == "idx":
        return idx(data_dir)
    raise ValueError(f"unknown data set {name!r}; valid names are 'digits', 'idx'")


class BatchIterator:
    """Endless mini-batches of a data set, reshuffled every epoch."""

    def __init__(self, data: np.ndarray, batch_size: int, seed: int = 0):
        """Check the data and set up iteration from step 0.

        Args:
            data: array of shape (N, features) without NaN or inf.
            batch_size: rows per batch, 1 <= batch_size <= N.
            seed: seed of the per-epoch permutations.
        """
        data = np.asarray(data)
        if data.ndim != 2:
            raise ValueError(f"data must be 2-D (N, features), got shape {data.shape}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if len(data) < batch_size:
            raise ValueError(f"batch_size {batch_size} is larger than the data set ({len(data)} rows)")
        if not np.isfinite(data).all():
            raise ValueError("data contains NaN or inf values")
        self.data = data
        self.batch_size = int(batch_size)
        self.seed = seed
        self.steps_per_epoch = len(data) // self.batch_size
        self.step = 0
        self._epoch = -1
        self._order = np.empty(0, dtype=np.int64)

    def batch(self, step: int) -> np.ndarray:
        """Return the batch of a global step; it depends only on (seed, step).

        Args:
            step: 0-based global training step.

        Returns:
            Array of shape (batch_size, features).
        """
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        epoch, index = divmod(int(step), self.steps_per_epoch)
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self.data))
            self._epoch = epoch
        start = index * self.batch_size
        return self.data[self._order[start : start + self.batch_size]]

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> np.ndarray:
        out = self.batch(self.step)
        self.step += 1
        return out
