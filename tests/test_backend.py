"""Backend selection, dtypes, seeding, host/device copies and the clear errors."""
import sys
import types

import numpy as np
import pytest

import minigan as mg
from minigan import backend as backend_module


def test_numpy_backend_defaults_to_float32():
    be = mg.get_backend("numpy")
    assert be.xp is np and be.name == "numpy" and be.dtype == np.float32


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, np.float64])
def test_dtype_is_respected(dtype):
    be = mg.get_backend("numpy", dtype=dtype)
    assert be.dtype == np.dtype(dtype)
    assert be.asarray([1, 2]).dtype == np.dtype(dtype)
    assert be.standard_normal((3, 2)).dtype == np.dtype(dtype)
    assert be.uniform((3, 2)).dtype == np.dtype(dtype)


def test_same_seed_same_stream_different_seed_different_stream():
    a, b, c = (mg.get_backend("numpy", seed=s) for s in (7, 7, 8))
    assert np.array_equal(a.standard_normal((4, 4)), b.standard_normal((4, 4)))
    assert not np.array_equal(a.standard_normal((4, 4)), c.standard_normal((4, 4)))


def test_rng_state_round_trip():
    be = mg.get_backend("numpy", seed=3)
    be.standard_normal((5,))
    state = be.rng_state()
    first = be.standard_normal((5,))
    be.set_rng_state(state)
    assert np.array_equal(first, be.standard_normal((5,)))


@pytest.mark.parametrize("kwargs, words", [
    ({"name": "tpu"}, "backend must be one of"),
    ({"name": "numpy", "dtype": "int32"}, "dtype must be one of"),
    ({"name": "numpy", "dtype": "float16"}, "dtype must be one of"),
    ({"name": "numpy", "dtype": "nonsense"}, "dtype must be one of"),
    ({"name": "numpy", "seed": -1}, "seed must be a non-negative integer"),
    ({"name": "numpy", "seed": 1.5}, "seed must be a non-negative integer"),
])
def test_bad_arguments_are_clear_errors(kwargs, words):
    with pytest.raises(ValueError, match=words):
        mg.get_backend(**kwargs)


def test_environment_variable_selects_backend(monkeypatch):
    monkeypatch.setenv("MINIGAN_BACKEND", "numpy")
    assert mg.get_backend().name == "numpy"
    monkeypatch.setenv("MINIGAN_BACKEND", "bogus")
    with pytest.raises(ValueError, match="bogus"):
        mg.get_backend()


def test_cupy_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(mg.BackendUnavailableError, match="pip install"):
        mg.get_backend("cupy")
    assert mg.get_backend("auto").name == "numpy"
    assert not mg.cuda_available()


def _fake_cupy(device_count):
    def get_device_count():
        if device_count is None:
            raise RuntimeError("cudaErrorNoDevice")
        return device_count
    runtime = types.SimpleNamespace(getDeviceCount=get_device_count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


@pytest.mark.parametrize("device_count", [0, None])
def test_cupy_without_device_says_so(monkeypatch, device_count):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(device_count))
    with pytest.raises(mg.BackendUnavailableError, match="no CUDA device"):
        mg.get_backend("cupy")
    assert mg.get_backend("auto").name == "numpy"


def test_auto_picks_cupy_when_a_device_exists(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(1))
    assert mg.get_backend("auto").name == "cupy"


def test_two_backends_side_by_side():
    be32, be64 = mg.get_backend("numpy", "float32"), mg.get_backend("numpy", "float64")
    m32 = mg.Sequential([mg.Dense(3, 2)], backend=be32)
    m64 = mg.Sequential([mg.Dense(3, 2)], backend=be64)
    assert m32.params.dtype == np.float32 and m64.params.dtype == np.float64
    assert m32.forward(be32.asarray(np.ones((1, 3)))).dtype == np.float32
    assert m64.forward(be64.asarray(np.ones((1, 3)))).dtype == np.float64


def test_host_copies(backend):
    host = np.arange(6.0).reshape(2, 3)
    device = backend.asarray(host)
    backend.synchronize()
    assert isinstance(backend.to_numpy(device), np.ndarray)
    assert np.array_equal(backend.to_numpy(device), host)
    assert backend_module.array_module(device) is backend.xp
