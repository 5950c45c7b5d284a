"""Shared fixtures: a `backend` parametrised over every available array backend (numpy,
the strict CuPy stand-in of tests/strict_cupy.py, and cupy with a CUDA device), the
Hypothesis profiles ("ci" is deterministic and is selected by $CI or
$HYPOTHESIS_PROFILE), and the `blas_kernels` marker for bit-for-bit comparisons with
fixtures that depend on the BLAS kernels they were recorded with."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_info, threadpool_limits

import minigan as mg
from minigan.backend import register_array_module
from minigan.classifier import FeatureClassifier
from minigan.data import ImageDataset

import strict_cupy

settings.register_profile("dev", deadline=None, max_examples=30,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, max_examples=30, derandomize=True,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# One BLAS thread for the whole suite: the tests' products are small, and two threads
# stall whenever another process holds a core (docs/benchmarks.md, "BLAS threads per preset").
threadpool_limits(limits=1, user_api="blas")


def pytest_configure(config):
    config.addinivalue_line("markers", "blas_kernels(name): compares bit for bit with a fixture recorded "
                                       "with OpenBLAS's `name` kernels (OPENBLAS_CORETYPE)")


def openblas_kernels() -> str | None:
    """The kernels NumPy's OpenBLAS runs ("Haswell", "SkylakeX", ...), None without OpenBLAS."""
    return next((info.get("architecture") for info in threadpool_info() if info["internal_api"] == "openblas"),
                None)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Runs a `blas_kernels(name)` test in a child process with OPENBLAS_CORETYPE=name when
    this process's OpenBLAS runs other kernels: float rounding, and so a bit-for-bit fixture,
    depends on them (another kernel sums a product in another order)."""
    marker = pyfuncitem.get_closest_marker("blas_kernels")
    if marker is None:
        return None
    wanted, kernels = marker.args[0], openblas_kernels()
    if kernels == wanted:
        return None  # run here, as usual
    if kernels is None:
        pytest.skip(f"the fixture was recorded with OpenBLAS's {wanted} kernels; this NumPy has no OpenBLAS")
    if os.environ.get("MINIGAN_TEST_BLAS_CHILD"):
        pytest.fail(f"OPENBLAS_CORETYPE={wanted} was set, yet OpenBLAS runs its {kernels} kernels")
    if sys.platform == "linux" and wanted == "Haswell" and " avx2" not in Path("/proc/cpuinfo").read_text():
        pytest.skip(f"the fixture was recorded with OpenBLAS's {wanted} kernels, which need AVX2")
    env = {**os.environ, "OPENBLAS_CORETYPE": wanted, "MINIGAN_TEST_BLAS_CHILD": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", pyfuncitem.nodeid],
                            cwd=pyfuncitem.config.rootpath, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (f"with OPENBLAS_CORETYPE={wanted} (this process runs {kernels}):\n"
                                    + result.stdout[-4000:] + result.stderr[-2000:])
    return True


register_array_module(strict_cupy.xp)
BACKENDS = [
    "numpy",
    strict_cupy.xp.__name__,  # NumPy behind CuPy's interface: the CuPy path without a GPU
    pytest.param("cupy", marks=pytest.mark.skipif(not mg.cuda_available(),
                                                  reason="needs CuPy and a CUDA device")),
]


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    """Every backend this machine can run: numpy and strict_cupy always, cupy with a CUDA device."""
    return request.param


@pytest.fixture
def backend(backend_name):
    """A float64 backend (gradient checks need float64)."""
    return mg.get_backend(backend_name, dtype="float64", seed=0)


@pytest.fixture
def backend32(backend_name):
    """A float32 backend, the training default."""
    return mg.get_backend(backend_name, dtype="float32", seed=0)


# ---------------------------------------------------------------- shared Hypothesis strategies

ACTIVATION_MAKERS = [mg.ReLU, lambda: mg.LeakyReLU(0.2), mg.Sigmoid, mg.Tanh]


@st.composite
def layer_stacks(draw):
    """A random stack: Dense layers of width 1..32 with random activations between; returns
    (input width, layers)."""
    widths = draw(st.lists(st.integers(1, 32), min_size=2, max_size=4))
    layers = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers.append(mg.Dense(n_in, n_out, init=draw(st.sampled_from(mg.layers.INITIALISERS))))
        if draw(st.booleans()):
            layers.append(draw(st.sampled_from(ACTIVATION_MAKERS))())
    return widths[0], layers


@st.composite
def conv_geometries(draw):
    """(kernel, stride, padding, in_channels, out_channels, height, width) of a valid conv."""
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    height = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), 9))
    width = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), 9))
    return kernel, stride, padding, draw(st.integers(1, 4)), draw(st.integers(1, 4)), height, width


def output_padding_for(height, width, kernel, stride, padding):
    """The output_padding that makes the transposed conv map the conv's output back to (H, W)."""
    return tuple((size + 2 * p - k) % s for size, k, s, p in zip((height, width), kernel, stride, padding))


# ---------------------------------------------------------------- checkpoints


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark_script(name):
    """The module of benchmarks/<name>.py, loaded from its file (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def assert_same_checkpoint_arrays(first_dir, second_dir):
    """Every array of first_dir/checkpoint.npz equals the same-named one of second_dir's (the
    JSON record aside, which names the output directory); returns the first's arrays."""
    from minigan.checkpoint import read_npz
    first, second = read_npz(first_dir / "checkpoint.npz"), read_npz(second_dir / "checkpoint.npz")
    for name in first:
        if name != "config":
            assert np.array_equal(first[name], second[name]), name
    return first


# ---------------------------------------------------------------- image data for the metrics


def _pattern_images(rng, labels, noise=0.15):
    """8x8 images: one fixed random binary pattern per class, plus noise, clipped to [0, 1]."""
    prototypes = (np.random.default_rng(99).random((10, 64)) > 0.5).astype(np.float32)
    images = prototypes[labels] + noise * rng.standard_normal((len(labels), 64))
    return np.clip(images, 0, 1).astype(np.float32)


@pytest.fixture(scope="session")
def pattern_images():
    """The function that draws pattern images: (rng, labels, noise=0.15) -> (N, 64)."""
    return _pattern_images


@pytest.fixture(scope="module")
def patterns():
    rng = np.random.default_rng(5)
    y_train, y_test = rng.integers(0, 10, 800), np.repeat(np.arange(10), 30)
    return ImageDataset("patterns", _pattern_images(rng, y_train), y_train,
                        _pattern_images(rng, y_test), y_test, (8, 8), 10)


@pytest.fixture(scope="module")
def trained(patterns):
    classifier = FeatureClassifier(64, hidden=64, feature_dim=16, seed=0)
    classifier.fit(patterns.x_train, patterns.y_train, epochs=5, lr=3e-3)
    return classifier
