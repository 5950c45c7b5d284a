"""Fused CUDA kernels (CuPy `ElementwiseKernel`) for the optimizer updates, each with its
NumPy reference.

On a GPU each NumPy-style in-place operation of an optimizer step is its own kernel
launch reading and writing the whole buffer; these kernels do a whole update in one
pass. Each kernel has a NumPy reference that takes the same arguments in the same order:
the reference rounds exactly as the optimizer's NumPy path in `minigan.optim` does, and the
kernel exactly as its reference, so all three give the same bits (tests/test_kernels.py
checks the first claim everywhere, the second on a device). The kernels are built lazily
from the CuPy that `minigan.backend` provides, so importing this module needs no CuPy.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import numpy as np

from .backend import import_cupy

# NVRTC contracts a * b + c into one fused multiply-add (one rounding) by default; NumPy
# rounds the product and the sum separately, so contraction is off to get NumPy's numbers.
# Division and sqrt are IEEE-rounded by NVRTC's defaults (-prec-div, -prec-sqrt), as in NumPy.
COMPILE_OPTIONS = ("--fmad=false",)


class Kernel(NamedTuple):
    """One fused update: its CUDA source and its NumPy reference.

    The scalars are T, the buffers' dtype (but for SGD's float64 momentum), so float32
    stays float32; the optimizer computes each on the host in float64 and rounds it once
    to T, as NumPy does.
    """

    in_params: str                    # read-only: the gradient, then the scalars
    inout_params: str                 # updated in place: the parameters, then the state
    body: str                         # CUDA C++ for one element
    reference: Callable[..., None]    # the same update on NumPy arrays, same arguments


def sgd_reference(grad: np.ndarray, lr: Any, momentum: Any, param: np.ndarray,
                  momentum_buffer: np.ndarray) -> None:
    """The "sgd" kernel on NumPy arrays: one torch.optim.SGD step, in place."""
    if momentum:  # the float64 momentum, as the NumPy path tests it
        momentum_buffer[...] = momentum_buffer.dtype.type(momentum) * momentum_buffer + grad
        param -= lr * momentum_buffer
    else:  # the buffer is not written
        param -= lr * grad


def adam_reference(grad: np.ndarray, beta1: Any, beta2: Any, eps_scaled: Any, step_size: Any,
                   param: np.ndarray, m_scaled: np.ndarray, v_scaled: np.ndarray) -> None:
    """The "adam" kernel on NumPy arrays: one step of `optim.Adam` (rescaled moments), in place."""
    m_scaled[...] = beta1 * m_scaled + grad
    v_scaled[...] = beta2 * v_scaled + grad * grad
    param -= step_size * (m_scaled / (np.sqrt(v_scaled) + eps_scaled))


def rmsprop_reference(grad: np.ndarray, lr: Any, alpha: Any, one_minus_alpha: Any, eps: Any,
                      param: np.ndarray, square_avg: np.ndarray) -> None:
    """The "rmsprop" kernel on NumPy arrays: one torch.optim.RMSprop step, in place."""
    square_avg[...] = alpha * square_avg + one_minus_alpha * (grad * grad)
    param -= lr * (grad / (np.sqrt(square_avg) + eps))


KERNELS = {
    # torch.optim.SGD: buf = momentum buf + g; p -= lr buf.  Momentum 0: p -= lr g, buf untouched.
    # momentum stays float64 to be tested for 0: in float32 a tiny one would round to 0
    "sgd": Kernel("T grad, T lr, float64 momentum", "T param, T momentum_buffer",
                  "if (momentum != 0) {"
                  " momentum_buffer = (T)momentum * momentum_buffer + grad;"
                  " param -= lr * momentum_buffer;"
                  " } else {"
                  " param -= lr * grad;"
                  " }",
                  sgd_reference),
    # torch.optim.Adam on the rescaled moments m / (1 - b1), v / (1 - b2) of optim.Adam
    "adam": Kernel("T grad, T beta1, T beta2, T eps_scaled, T step_size",
                   "T param, T m_scaled, T v_scaled",
                   "m_scaled = beta1 * m_scaled + grad;"
                   " v_scaled = beta2 * v_scaled + grad * grad;"
                   " param -= step_size * (m_scaled / (sqrt(v_scaled) + eps_scaled));",
                   adam_reference),
    # torch.optim.RMSprop: v = alpha v + (1 - alpha) g^2; p -= lr g / (sqrt(v) + eps);
    # 1 - alpha comes from the host, where NumPy's path rounds it (once, from float64)
    "rmsprop": Kernel("T grad, T lr, T alpha, T one_minus_alpha, T eps", "T param, T square_avg",
                      "square_avg = alpha * square_avg + one_minus_alpha * (grad * grad);"
                      " param -= lr * (grad / (sqrt(square_avg) + eps));",
                      rmsprop_reference),
}


@functools.lru_cache(maxsize=None)
def fused_update(name: str) -> Any:
    """The CuPy `ElementwiseKernel` for optimizer `name` ("sgd", "adam" or "rmsprop").

    Built on first use; CuPy compiles it on its first call, which needs a CUDA device.

    Raises:
        BackendUnavailableError: CuPy is not installed.
    """
    kernel = KERNELS[name]
    return import_cupy().ElementwiseKernel(kernel.in_params, kernel.inout_params, kernel.body,
                                           f"minigan_{name}_update", options=COMPILE_OPTIONS)
