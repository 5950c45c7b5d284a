"""Backend selection, dtypes, seeding, host/device copies and the clear errors; the strict
CuPy stand-in (tests/strict_cupy.py) refuses what CuPy refuses."""
import operator
import sys
import types

import numpy as np
import pytest

import minigan as mg
from minigan import backend as backend_module

import strict_cupy


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


def test_the_strict_stand_in_refuses_implicit_host_conversions():
    be = mg.get_backend("strict_cupy", "float64")
    assert be.name == "strict_cupy" and be.xp is strict_cupy.xp
    assert not mg.Adam(mg.Sequential([mg.Dense(2, 1)], backend=be)).fused  # NumPy's update, no CUDA kernel
    a = be.asarray(np.arange(6.0).reshape(2, 3))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(a)
    with pytest.raises(TypeError, match="0-dimensional"):  # CuPy's float() goes through .get()
        float(a[0])
    with pytest.raises(TypeError):  # NumPy's functions would convert it (CuPy has no __index__ either)
        np.exp(a)
    with pytest.raises(TypeError):
        operator.index(be.xp.asarray(3))
    host = be.to_numpy(a)
    assert type(host) is np.ndarray and np.array_equal(host, np.arange(6.0).reshape(2, 3))
    host[0, 0] = 7.0  # a copy
    assert float(a[0, 0]) == 0.0 and backend_module.array_module(a) is be.xp


@pytest.mark.parametrize("mix", [
    lambda a: a + np.ones(3), lambda a: np.ones(3) * a, lambda a: a - [1.0, 2.0, 3.0],
    lambda a: a.__iadd__(np.ones(3)), lambda a: a == np.ones(3),
    lambda a: strict_cupy.xp.maximum(a, np.zeros(3)),
    lambda a: strict_cupy.xp.concatenate([a, np.zeros((1, 3))]),
], ids=["operator", "reflected", "list", "in-place", "comparison", "ufunc", "function"])
def test_the_strict_stand_in_refuses_to_mix_with_host_arrays(mix):
    a = mg.get_backend("strict_cupy", "float64").asarray(np.ones((2, 3)))
    with pytest.raises(TypeError, match="Unsupported type"):
        mix(a)


def test_the_strict_stand_in_allows_what_cupy_allows():
    be = mg.get_backend("strict_cupy", "float64")
    a = be.asarray(np.ones((2, 3)))
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray"):  # CuPy fills slices from scalars only
        a[...] = np.zeros((2, 3))
    a[...] = np.float64(2.0)          # a host scalar
    a[np.array([1])] = np.zeros((1, 3))  # advanced indexing copies host values
    a[0] *= be.xp.asarray(3.0)
    total = (2 * a + 1.0).sum()  # scalars mix freely; a reduction is a 0-d device array
    assert isinstance(total, be.xp.ndarray) and total.shape == () and float(total) == 42.0
    assert bool(total > 0) and f"{total:.1f}" == "42.0"
    model = mg.Sequential([mg.Dense(3, 2), mg.Tanh()], backend=be)
    assert isinstance(model.forward(a), be.xp.ndarray)


def test_the_strict_stand_in_offers_only_cupy_names():
    cupy = pytest.importorskip("cupy", reason="checks the stand-in's names against CuPy (imports without a device)")
    assert [name for name in strict_cupy.MODULE_NAMES if not hasattr(cupy, name)] == []
    assert [name for name in strict_cupy.ARRAY_NAMES if not hasattr(cupy.ndarray, name)] == []
    assert [name for name in strict_cupy.STRIDE_TRICKS_NAMES if not hasattr(cupy.lib.stride_tricks, name)] == []
    public = {name for name in vars(strict_cupy.xp) if not name.startswith("__")}
    assert public == {*strict_cupy.MODULE_NAMES, "ndarray", "asnumpy", "lib"}
    assert not hasattr(strict_cupy.xp, "errstate") and hasattr(np, "errstate")  # NumPy's, not CuPy's


def fake_cupy_error(name, module, base=Exception):
    """An exception class named like one of CuPy's, without CuPy."""
    return type(name, (base,), {"__module__": module})


CUPY_OUT_OF_MEMORY = fake_cupy_error("OutOfMemoryError", "cupy.cuda.memory", MemoryError)
CUDA_RUNTIME_ERROR = fake_cupy_error("CUDARuntimeError", "cupy_backends.cuda.api.runtime", RuntimeError)


@pytest.mark.parametrize("error, expected", [
    (CUPY_OUT_OF_MEMORY("Out of memory allocating 512 bytes"), True),
    (CUDA_RUNTIME_ERROR("cudaErrorMemoryAllocation: out of memory"), True),
    (fake_cupy_error("CUBLASError", "cupy_backends.cuda.libs.cublas", RuntimeError)(
        "CUBLAS_STATUS_ALLOC_FAILED"), True),
    (CUDA_RUNTIME_ERROR("cudaErrorIllegalAddress: an illegal memory access was encountered"), False),
    (fake_cupy_error("OutOfMemoryError", "somewhere.else", MemoryError)("no GPU involved"), False),
    (MemoryError("host memory"), False),
    (RuntimeError("cudaErrorMemoryAllocation, but not raised by CuPy"), False),
], ids=["cupy-oom", "runtime-allocation", "cublas-allocation", "other-cuda-error", "foreign-class",
        "host-memory", "foreign-message"])
def test_out_of_device_memory_is_recognised_without_cupy(monkeypatch, error, expected):
    monkeypatch.setitem(sys.modules, "cupy", None)  # recognition must not need CuPy
    assert backend_module.is_out_of_memory(error) is expected


def test_cupys_own_out_of_memory_error_is_recognised():
    cupy = pytest.importorskip("cupy", reason="needs CuPy installed (not a device)")
    error = cupy.cuda.memory.OutOfMemoryError(1024, 0)
    assert backend_module.is_out_of_memory(error)
    names = [[(kind.__module__, kind.__name__) for kind in error_type.__mro__]
             for error_type in (CUPY_OUT_OF_MEMORY, type(error))]
    assert names[0] == names[1]  # the fake the other tests raise is named as CuPy's


def test_device_properties_describe_a_cuda_device_and_nothing_else(backend):
    properties = backend_module.device_properties(backend)
    if backend.name == "cupy":
        assert properties["name"] and properties["memory_gib"] > 0 and properties["cupy"]
    else:
        assert properties == {}


def test_device_properties_read_cupys_runtime():
    properties = {"name": b"NVIDIA H200", "totalGlobalMem": 141 * 2**30, "major": 9, "minor": 0,
                  "multiProcessorCount": 132}
    runtime = types.SimpleNamespace(getDeviceProperties=lambda device: properties,
                                    runtimeGetVersion=lambda: 12080, driverGetVersion=lambda: 12090)
    fake = types.SimpleNamespace(__version__="14.0.0", cuda=types.SimpleNamespace(
        runtime=runtime, Device=lambda: types.SimpleNamespace(id=0)))
    described = backend_module.device_properties(backend_module.Backend(fake, "cupy", np.float32, 0))
    assert described == {"name": "NVIDIA H200", "memory_gib": 141.0, "compute_capability": "9.0",
                         "multiprocessors": 132, "cuda_runtime": 12080, "cuda_driver": 12090, "cupy": "14.0.0"}


def test_host_backends_chunk_large_temporaries_and_a_gpu_backend_does_not():
    from minigan.backend import HOST_CHUNK_BYTES, Backend
    assert mg.get_backend("numpy").chunk_bytes == HOST_CHUNK_BYTES == 4 * 2**20
    assert Backend(np, "cupy", np.float32, 0).chunk_bytes is None  # one large kernel on a GPU
