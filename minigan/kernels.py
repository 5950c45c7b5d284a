"""Fused CUDA kernels (CuPy `ElementwiseKernel`) for the optimizer updates.

On a GPU each NumPy-style in-place operation of an optimizer step is its own kernel
launch reading and writing the whole buffer; these kernels do a whole update in one
pass. Each computes exactly what the NumPy path in `minigan.optim` computes (tests
compare the two on a device). Built lazily, so importing this module needs no GPU.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

# name -> (input parameters, in/out parameters, per-element body); the scalars are T
# (the buffers' dtype) so float32 stays float32.
_KERNELS = {
    # torch.optim.SGD: buf = momentum buf + g; p -= lr buf
    "sgd": ("T grad, T lr, T momentum", "T param, T buf",
            "buf = momentum * buf + grad; param -= lr * buf"),
    # torch.optim.Adam on the rescaled moments m / (1 - b1), v / (1 - b2) of optim.Adam
    "adam": ("T grad, T beta1, T beta2, T eps_scaled, T step_size", "T param, T m, T v",
             "m = beta1 * m + grad; v = beta2 * v + grad * grad;"
             " param -= step_size * (m / (sqrt(v) + eps_scaled))"),
    # torch.optim.RMSprop: v = alpha v + (1 - alpha) g^2; p -= lr g / (sqrt(v) + eps)
    "rmsprop": ("T grad, T lr, T alpha, T eps", "T param, T square_avg",
                "square_avg = alpha * square_avg + (1 - alpha) * (grad * grad);"
                " param -= lr * (grad / (sqrt(square_avg) + eps))"),
}


@functools.lru_cache(maxsize=None)
def fused_update(name: str) -> Callable[..., Any]:
    """The fused kernel for optimizer `name` ("sgd", "adam" or "rmsprop")."""
    import cupy
    in_params, inout_params, body = _KERNELS[name]
    return cupy.ElementwiseKernel(in_params, inout_params, body, f"minigan_{name}_update")
