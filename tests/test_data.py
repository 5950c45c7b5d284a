"""Tests for minigan.data: mixtures, IDX parsing, image data sets and batching."""

import gzip
import math
import pathlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigan import data
from minigan.data import (
    DEFAULT_IDX_DIR,
    GRID25,
    MIXTURES,
    RING8,
    BatchIterator,
    DataError,
    Mixture2D,
    idx,
    load_dataset,
    read_idx,
    resolve_data_dir,
)

# ---------------------------------------------------------------- mixtures


def test_ring8_modes_are_eight_points_at_45_degree_steps():
    h = math.sqrt(0.5)
    expected = np.array([(1, 0), (h, h), (0, 1), (-h, h), (-1, 0), (-h, -h), (0, -1), (h, -h)])
    np.testing.assert_allclose(RING8.modes, expected, atol=1e-12)
    assert len(np.unique(np.round(RING8.modes, 9), axis=0)) == 8
    np.testing.assert_allclose(np.linalg.norm(RING8.modes, axis=1), 1.0)
    assert RING8.std == 0.01 and RING8.name == "ring8"


def test_grid25_modes_are_the_even_grid():
    expected = {(float(x), float(y)) for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)}
    assert RING8.modes.shape == (8, 2) and GRID25.modes.shape == (25, 2)
    assert {tuple(p) for p in GRID25.modes.tolist()} == expected
    assert GRID25.std == 0.05 and GRID25.name == "grid25"


def test_mixtures_registry():
    assert MIXTURES == {"ring8": RING8, "grid25": GRID25}


@pytest.mark.parametrize("mixture", [RING8, GRID25], ids=lambda m: m.name)
def test_samples_have_the_mode_std_and_cover_every_mode(mixture):
    points = mixture.sample(40_000, np.random.default_rng(1))
    assert points.shape == (40_000, 2) and points.dtype == np.float64
    dist = np.linalg.norm(points[:, None, :] - mixture.modes[None, :, :], axis=2)
    nearest = dist.argmin(axis=1)
    residual = points - mixture.modes[nearest]
    std_estimate = np.sqrt(np.mean(residual**2))
    assert std_estimate == pytest.approx(mixture.std, rel=0.03)
    counts = np.bincount(nearest, minlength=len(mixture.modes))
    expected = len(points) / len(mixture.modes)
    assert counts.min() > 0.8 * expected and counts.max() < 1.2 * expected


def test_sample_is_deterministic_and_honours_dtype():
    a = RING8.sample(100, np.random.default_rng(7))
    b = RING8.sample(100, np.random.default_rng(7))
    c = RING8.sample(100, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert GRID25.sample(5, np.random.default_rng(0), dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_sample_rejects_bad_n(n):
    with pytest.raises(ValueError, match="n must be"):
        RING8.sample(n, np.random.default_rng(0))


def test_mixture_validates_and_freezes_modes():
    with pytest.raises(ValueError, match="shape"):
        Mixture2D("bad", np.zeros((3, 3)), 0.1)
    with pytest.raises(ValueError, match="std"):
        Mixture2D("bad", np.zeros((3, 2)), 0.0)
    with pytest.raises(ValueError):
        RING8.modes[0, 0] = 5.0


# ---------------------------------------------------------------- IDX files


def idx_bytes(array: np.ndarray, type_code: int = 8) -> bytes:
    """Encode a uint8 array as IDX by hand."""
    header = struct.pack(">HBB", 0, type_code, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path: pathlib.Path, payload: bytes, gz: bool = False) -> pathlib.Path:
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


@pytest.mark.parametrize("name,gz", [("plain", False), ("plain.gz", True), ("gzip-without-suffix", True)])
def test_read_idx_round_trip(tmp_path, name, gz):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 7
    out = read_idx(write(tmp_path / name, idx_bytes(array), gz=gz))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)


@settings(deadline=None, max_examples=50)
@given(
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    gz=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_read_idx_round_trip_property(tmp_path_factory, shape, gz, seed):
    array = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path_factory.mktemp("idx") / ("f.gz" if gz else "f")
    out = read_idx(write(path, idx_bytes(array), gz=gz))
    assert out.shape == tuple(shape)
    np.testing.assert_array_equal(out, array)


def broken_cases():
    good = idx_bytes(np.ones((4, 3), dtype=np.uint8))
    return {
        "truncated": (good[:-2], "truncated"),
        "trailing": (good + b"\x00", "trailing bytes"),
        "header": (good[:6], "truncated"),
        "magic": (b"\x01\x02" + good[2:], "bad magic"),
        "empty": (b"", "bad magic"),
        "type": (idx_bytes(np.ones(3, dtype=np.uint8), type_code=0x0D), "type code 0x0d"),
        "zero-dims": (struct.pack(">HBB", 0, 8, 0), "zero dimensions"),
    }


@pytest.mark.parametrize("case", list(broken_cases()))
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_rejects_broken_files(tmp_path, case, gz):
    payload, words = broken_cases()[case]
    path = write(tmp_path / ("f.gz" if gz else "f"), payload, gz=gz)
    with pytest.raises(DataError, match=words) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_corrupt_gzip(tmp_path):
    compressed = gzip.compress(idx_bytes(np.ones((50, 50), dtype=np.uint8)))
    for i, payload in enumerate([compressed[: len(compressed) // 2], compressed[:10] + b"\xff" * 20]):
        path = tmp_path / f"bad{i}.gz"
        path.write_bytes(payload)
        with pytest.raises(DataError, match="corrupt gzip"):
            read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found") as info:
        read_idx(tmp_path / "nope")
    assert "nope" in str(info.value)
    assert issubclass(DataError, ValueError)


def write_fake_idx_dir(directory, n_train=12, n_test=5, gz=(True, False, False, True), labels_train=None):
    """Write a fake four-file IDX set of 28x28 images; return the arrays."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8) if labels_train is None else labels_train,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    arrays["x_train"][0, 0, 0], arrays["x_train"][0, 0, 1] = 0, 255
    for (key, name), zipped in zip(data.IDX_FILES.items(), gz):
        write(directory / (name + ".gz" if zipped else name), idx_bytes(arrays[key]), gz=zipped)
    return arrays


def test_idx_loads_a_fake_dataset(tmp_path):
    arrays = write_fake_idx_dir(tmp_path)
    ds = idx(str(tmp_path))
    assert ds.name == "idx" and ds.image_shape == (28, 28) and ds.num_classes == 10
    assert ds.x_train.shape == (12, 784) and ds.x_test.shape == (5, 784)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    np.testing.assert_allclose(ds.x_train, arrays["x_train"].reshape(12, -1) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(ds.x_test, arrays["x_test"].reshape(5, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_train, arrays["y_train"])
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])


def test_idx_label_count_mismatch(tmp_path):
    write_fake_idx_dir(tmp_path, labels_train=np.zeros(11, dtype=np.uint8))
    with pytest.raises(DataError, match="label count 11 does not match image count 12"):
        idx(str(tmp_path))


def test_idx_label_out_of_range(tmp_path):
    write_fake_idx_dir(tmp_path, labels_train=np.full(12, 10, dtype=np.uint8))
    with pytest.raises(DataError, match="out of range"):
        idx(str(tmp_path))


def test_idx_wrong_dimensionality(tmp_path):
    write_fake_idx_dir(tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros((5, 1), dtype=np.uint8)))
    with pytest.raises(DataError, match="labels must be 1-D"):
        idx(str(tmp_path))
    write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((12, 784), dtype=np.uint8)), gz=True)
    with pytest.raises(DataError, match="images must be 3-D"):
        idx(str(tmp_path))


def test_idx_missing_files_message(tmp_path):
    write_fake_idx_dir(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError) as info:
        idx(str(tmp_path))
    message = str(info.value)
    assert "missing IDX files t10k-images-idx3-ubyte;" in message and str(tmp_path) in message
    assert "train-labels-idx1-ubyte" in message and "--data-dir" in message and "MINIGAN_DATA" in message
    assert "apt-get" not in message


def test_idx_missing_default_dir_suggests_apt(monkeypatch, tmp_path):
    monkeypatch.delenv("MINIGAN_DATA", raising=False)
    monkeypatch.setattr(data, "DEFAULT_IDX_DIR", str(tmp_path / "absent"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as info:
        idx()
    assert "MINIGAN_DATA" in str(info.value)


def test_resolve_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("MINIGAN_DATA", raising=False)
    assert resolve_data_dir(None) == pathlib.Path(DEFAULT_IDX_DIR)
    monkeypatch.setenv("MINIGAN_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


def test_idx_uses_env_var(monkeypatch, tmp_path):
    write_fake_idx_dir(tmp_path, n_train=3, n_test=2)
    monkeypatch.setenv("MINIGAN_DATA", str(tmp_path))
    assert idx().x_train.shape == (3, 784)
    assert load_dataset("idx").x_test.shape == (2, 784)


@pytest.mark.skipif(not pathlib.Path(DEFAULT_IDX_DIR).is_dir(), reason="Fashion-MNIST is not installed")
def test_real_fashion_mnist():
    ds = idx(DEFAULT_IDX_DIR)
    assert ds.x_train.shape == (60_000, 784) and ds.x_test.shape == (10_000, 784)
    assert ds.y_train.shape == (60_000,) and ds.y_test.shape == (10_000,)
    assert ds.x_train.dtype == np.float32 and ds.image_shape == (28, 28)
    assert ds.x_train.min() >= 0.0 and ds.x_train.max() <= 1.0 and ds.x_train.max() > 0.99
    assert set(np.unique(ds.y_train)) == set(range(10))


# ---------------------------------------------------------------- digits and dispatch


def test_digits_split():
    pytest.importorskip("sklearn")
    ds = data.digits()
    assert ds.name == "digits" and ds.image_shape == (8, 8) and ds.num_classes == 10
    assert len(ds.x_train) + len(ds.x_test) == 1797 and len(ds.x_test) == round(1797 * 0.2)
    assert ds.x_train.shape[1] == 64 and ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    from sklearn.datasets import load_digits

    reference = load_digits()
    rows = np.concatenate([ds.x_train, ds.x_test]) * 16
    order = np.lexsort(rows.T)
    np.testing.assert_array_equal(rows[order], reference.data[np.lexsort(reference.data.T)])
    again = data.digits(seed=0)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    np.testing.assert_array_equal(ds.y_test, again.y_test)
    other = data.digits(seed=1)
    assert not np.array_equal(ds.y_test, other.y_test)
    np.testing.assert_array_equal(load_dataset("digits", seed=1).x_test, other.x_test)


def test_digits_rejects_bad_fraction():
    with pytest.raises(ValueError, match="test_fraction"):
        data.digits(test_fraction=1.0)


def test_load_dataset_unknown_name():
    with pytest.raises(ValueError, match="'digits', 'idx'"):
        load_dataset("cifar")


# ---------------------------------------------------------------- batching


def column(n):
    return np.arange(n, dtype=np.float64)[:, None]


@settings(deadline=None, max_examples=60)
@given(n=st.integers(1, 60), data_seed=st.integers(0, 10), bs_fraction=st.floats(0, 1))
def test_each_epoch_visits_each_row_at_most_once(n, data_seed, bs_fraction):
    batch_size = max(1, int(bs_fraction * n))
    it = BatchIterator(column(n), batch_size, seed=data_seed)
    steps = n // batch_size
    assert it.steps_per_epoch == steps
    for epoch in range(3):
        seen = np.concatenate([it.batch(epoch * steps + i)[:, 0] for i in range(steps)])
        assert len(seen) == steps * batch_size
        assert len(np.unique(seen)) == len(seen)
        assert set(seen) <= set(range(n))


@settings(deadline=None, max_examples=40)
@given(n=st.integers(1, 40), batch_size=st.integers(1, 40), seed=st.integers(0, 100), k=st.integers(0, 30))
def test_batch_matches_iteration_and_resumption(n, batch_size, seed, k):
    batch_size = min(batch_size, n)
    it = BatchIterator(column(n), batch_size, seed=seed)
    iterated = [next(it) for _ in range(k + 1)]
    assert it.step == k + 1
    np.testing.assert_array_equal(iterated[k], it.batch(k))
    resumed = BatchIterator(column(n), batch_size, seed=seed)
    resumed.step = k
    np.testing.assert_array_equal(next(resumed), iterated[k])
    np.testing.assert_array_equal(BatchIterator(column(n), batch_size, seed=seed).batch(k), iterated[k])


def test_epochs_and_seeds_differ_and_shapes():
    x = np.random.default_rng(0).standard_normal((100, 3))
    it = BatchIterator(x, 10, seed=3)
    first = np.concatenate([it.batch(i) for i in range(10)])
    second = np.concatenate([it.batch(10 + i) for i in range(10)])
    assert it.batch(0).shape == (10, 3)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(first, axis=0), np.sort(second, axis=0))
    assert not np.array_equal(BatchIterator(x, 10, seed=4).batch(0), it.batch(0))
    assert iter(it) is it


def test_incomplete_last_batch_is_dropped():
    it = BatchIterator(column(10), 4)
    assert it.steps_per_epoch == 2
    epoch0 = np.concatenate([it.batch(0), it.batch(1)])[:, 0]
    assert len(epoch0) == 8
    np.testing.assert_array_equal(epoch0, np.random.default_rng([0, 0]).permutation(10)[:8])
    np.testing.assert_array_equal(it.batch(2)[:, 0], np.random.default_rng([0, 1]).permutation(10)[:4])


@pytest.mark.parametrize(
    "x,batch_size,words",
    [
        (np.zeros(5), 2, "2-D"),
        (np.zeros((5, 2)), 0, "batch_size must be"),
        (np.zeros((5, 2)), 6, "larger than the data set"),
        (np.array([[0.0], [np.nan]]), 1, "NaN or inf"),
        (np.array([[0.0], [np.inf]]), 1, "NaN or inf"),
    ],
)
def test_batch_iterator_errors(x, batch_size, words):
    with pytest.raises(ValueError, match=words):
        BatchIterator(x, batch_size)


def test_negative_step_rejected():
    with pytest.raises(ValueError, match="step must be >= 0"):
        BatchIterator(column(4), 2).batch(-1)
