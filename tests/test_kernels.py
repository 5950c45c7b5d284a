"""Fused optimizer kernels: each NumPy reference against the optimizer's NumPy path, bit for
bit; each CuPy kernel against its reference on a device; the kernels' CUDA source built
and compiled (to exactly rounded arithmetic) where CuPy and NVRTC are, without a device."""
import inspect
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigan as mg
from minigan import kernels
from minigan.backend import BackendUnavailableError, import_cupy, to_host

STEPS = 6
DTYPES = ["float32", "float64"]
CUDA_TYPES = {"float32": "float", "float64": "double"}

# (model, lr, rate, eps) -> optimizer; rate is SGD's momentum, Adam's beta1, RMSProp's alpha
OPTIMIZERS = {
    "sgd": lambda model, lr, rate, eps: mg.SGD(model, lr),
    "sgd_momentum": lambda model, lr, rate, eps: mg.SGD(model, lr, momentum=rate),
    "adam": lambda model, lr, rate, eps: mg.Adam(model, lr, betas=(rate, 0.999), eps=eps),
    "rmsprop": lambda model, lr, rate, eps: mg.RMSProp(model, lr, alpha=rate, eps=eps),
}
HYPER_PARAMETERS = {"lr": st.floats(1e-4, 1.0), "rate": st.floats(0.0, 0.999),
                    "eps": st.floats(1e-10, 1e-1), "seed": st.integers(0, 2**32 - 1)}


def cupy_imports():
    """True when CuPy imports (it builds kernels without a device)."""
    try:
        import_cupy()
    except BackendUnavailableError:
        return False
    return True


needs_cupy = pytest.mark.skipif(not cupy_imports(), reason="needs CuPy")
needs_device = pytest.mark.skipif(not mg.cuda_available(), reason="needs CuPy and a CUDA device")


def flat_model(backend, size=64):
    """What an optimizer needs of a model: flat `params` and `grads` arrays and their backend."""
    params = backend.asarray(np.random.default_rng(1).standard_normal(size))  # (size,)
    return SimpleNamespace(params=params, grads=backend.xp.zeros_like(params), backend=backend)


def gradients(seed, size=64):
    """STEPS float64 gradients, some of them zero (Adam and RMSProp then divide 0 by eps)."""
    grads = np.random.default_rng(seed).standard_normal((STEPS, size))  # (STEPS, size)
    grads[2, :5] = 0.0
    return grads


def reference_step(optimizer):
    """`Optimizer.step` with the kernel's NumPy reference standing in for the kernel."""
    optimizer.steps += 1
    kernels.KERNELS[optimizer.kernel_name].reference(*optimizer._fused_arguments())


def assert_same_state(actual, expected):
    """Parameters and every state buffer equal bit for bit (signed zeros included)."""
    for name in ("params", *expected.state_names):
        got, want = to_host(getattr(actual, name)), to_host(getattr(expected, name))
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), name


@given(**HYPER_PARAMETERS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_reference_equals_the_numpy_path(kind, dtype, lr, rate, eps, seed):
    backend = mg.get_backend("numpy", dtype)
    plain = OPTIMIZERS[kind](flat_model(backend), lr, rate, eps)
    fused = OPTIMIZERS[kind](flat_model(backend), lr, rate, eps)
    for g in gradients(seed):
        plain.grads[...] = g
        fused.grads[...] = g
        plain.step()
        reference_step(fused)
    assert_same_state(fused, plain)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_reference_without_momentum_leaves_the_buffer_untouched(dtype):
    optimizer = mg.SGD(flat_model(mg.get_backend("numpy", dtype)), lr=0.1)
    for g in gradients(0):
        optimizer.grads[...] = g
        reference_step(optimizer)
    assert not optimizer.momentum_buffer.any()


@needs_device
@settings(max_examples=10)
@given(**HYPER_PARAMETERS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_kernel_equals_its_reference(kind, dtype, lr, rate, eps, seed):
    host, device = mg.get_backend("numpy", dtype), mg.get_backend("cupy", dtype)
    reference = OPTIMIZERS[kind](flat_model(host), lr, rate, eps)
    fused = OPTIMIZERS[kind](flat_model(device), lr, rate, eps)
    assert fused.fused
    for g in gradients(seed):
        reference.grads[...] = g
        fused.grads[...] = device.asarray(g)
        reference_step(reference)
        fused.step()
    assert_same_state(fused, reference)


@needs_cupy
@pytest.mark.parametrize("optimizer", [mg.SGD, mg.Adam, mg.RMSProp])
def test_kernel_builds_without_a_device(optimizer):
    kernel = kernels.fused_update(optimizer.kernel_name)
    assert isinstance(kernel, import_cupy().ElementwiseKernel)
    names = [p.name for p in kernel.in_params + kernel.out_params]
    assert names == list(inspect.signature(kernels.KERNELS[optimizer.kernel_name].reference).parameters)


def nvrtc_ptx(name, dtype):
    """PTX of kernel `name` for `dtype`, its body in CuPy's element-wise form, by NVRTC alone."""
    try:
        from cupy.cuda import nvrtc
        nvrtc.getVersion()
    except Exception as error:  # no CuPy, or CuPy without the NVRTC library
        pytest.skip(f"compiling without a device needs CuPy and NVRTC "
                    f"(pip install nvidia-cuda-nvrtc-cu12): {error}")
    kernel = kernels.fused_update(name)
    pointers = ([f"const {p.ctype} *_raw_{p.name}" for p in kernel.in_params]
                + [f"{p.ctype} *_raw_{p.name}" for p in kernel.out_params])
    elements = ([f"const {p.ctype} &{p.name} = _raw_{p.name}[i];" for p in kernel.in_params]
                + [f"{p.ctype} &{p.name} = _raw_{p.name}[i];" for p in kernel.out_params])
    source = (f"typedef {CUDA_TYPES[dtype]} T;\n"
              f"extern \"C\" __global__ void {kernel.name}({', '.join(pointers)}, int n) {{\n"
              f"  int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
              f"  if (i < n) {{ {' '.join(elements)} {kernel.operation} }}\n}}\n")
    program = nvrtc.createProgram(source, f"{kernel.name}.cu", (), ())
    try:
        nvrtc.compileProgram(program, (*kernels.COMPILE_OPTIONS, "-arch=compute_70"))
        ptx = nvrtc.getPTX(program)
    except nvrtc.NVRTCError:
        pytest.fail(f"{name} does not compile:\n{nvrtc.getProgramLog(program)}\n{source}")
    finally:
        nvrtc.destroyProgram(program)
    return ptx.decode() if isinstance(ptx, bytes) else ptx


@needs_cupy
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(kernels.KERNELS))
def test_kernel_compiles_to_exactly_rounded_arithmetic(name, dtype):
    ptx = nvrtc_ptx(name, dtype)
    assert f"st.global.f{np.dtype(dtype).itemsize * 8}" in ptx  # it stores T
    assert "fma" not in ptx, "a fused multiply-add rounds once where NumPy rounds twice"
    assert ".approx" not in ptx and ".ftz" not in ptx, "division and sqrt must be IEEE-rounded"
