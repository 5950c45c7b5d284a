"""Numerical gradient checks: central differences in float64, and a readable report.

Every hand-written backward in minigan is checked against
    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2 h).
In float64 with h = 1e-6 a correct gradient agrees to about 1e-9; a wrong one is off by
orders of magnitude. The error of one gradient array is
    max_i |analytic_i - numeric_i| / max(max_i |analytic_i|, max_i |numeric_i|),
the worst entry's error relative to the array's scale (0 when both arrays are zero).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .backend import array_module, get_backend, to_host
from .layers import Layer
from .model import Sequential

DEFAULT_TOLERANCE = 1e-6


class GradcheckError(AssertionError):
    """Raised by `assert_gradients_close` with the full report as its message."""


@dataclass
class GradientComparison:
    """How one analytic gradient array compares with its numerical estimate."""

    name: str
    error: float            # relative error, see the module docstring
    worst_index: tuple      # where the largest difference is
    analytic: float         # the two values there
    numeric: float


@dataclass
class GradcheckReport:
    """Comparisons for every checked array, worst first when printed."""

    comparisons: list[GradientComparison]

    @property
    def worst(self) -> GradientComparison:
        """The comparison with the largest relative error."""
        return max(self.comparisons, key=lambda comparison: comparison.error)

    @property
    def max_error(self) -> float:
        """The largest relative error over all arrays."""
        return self.worst.error

    def passed(self, tolerance: float = DEFAULT_TOLERANCE) -> bool:
        """True when every relative error is at most `tolerance`."""
        return self.max_error <= tolerance

    def __str__(self) -> str:
        lines = [f"{'gradient':<16} {'rel. error':>10}  {'worst at':<14} {'analytic':>14} {'numeric':>14}"]
        for c in sorted(self.comparisons, key=lambda comparison: -comparison.error):
            lines.append(f"{c.name:<16} {c.error:10.2e}  {str(c.worst_index):<14} "
                         f"{c.analytic:14.6e} {c.numeric:14.6e}")
        return "\n".join(lines)


def _require_float64(array: Any, what: str) -> None:
    if array.dtype != np.float64:
        raise TypeError(f"gradient checks need float64 {what}, got {array.dtype}: create the "
                        f"backend with get_backend(..., dtype='float64')")


def numerical_gradient(f: Callable[[], Any], x: Any, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar `f()` with respect to the array `x`.

    `x` is perturbed in place, one entry at a time, and restored exactly afterwards.

    Returns:
        A NumPy float64 array shaped like `x`.
    """
    _require_float64(x, "arrays")
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient perturbs x in place and needs a contiguous array")
    flat = x.reshape(-1)  # a view: writing into it perturbs x
    grad = np.zeros(flat.size)
    for i in range(flat.size):
        original = flat[i].copy()
        flat[i] = original + eps
        plus = float(f())
        flat[i] = original - eps
        minus = float(f())
        flat[i] = original
        grad[i] = (plus - minus) / (2 * eps)
    return grad.reshape(x.shape)


def compare(name: str, analytic: Any, numeric: Any) -> GradientComparison:
    """Compares two gradient arrays of the same shape (any backend)."""
    analytic = to_host(analytic).astype(np.float64)
    numeric = to_host(numeric).astype(np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError(f"{name}: analytic shape {analytic.shape} != numeric shape {numeric.shape}")
    if analytic.size == 0:
        return GradientComparison(name, 0.0, (), 0.0, 0.0)
    difference = np.abs(analytic - numeric)
    worst = np.unravel_index(int(np.argmax(difference)), difference.shape)
    scale = max(float(np.abs(analytic).max()), float(np.abs(numeric).max()))
    error = float(difference[worst]) / scale if scale > 0 else 0.0
    return GradientComparison(name, error, tuple(int(i) for i in worst),
                              float(analytic[worst]), float(numeric[worst]))


def check_model(model: Sequential | Layer, x: Any, dy: Any = None, eps: float = 1e-6,
                seed: int = 0) -> GradcheckReport:
    """Checks dL/dx and every parameter gradient of a model (or a single layer).

    The scalar checked is L = sum(model(x) * dy), with `dy` drawn from N(0, 1) (seeded)
    when not given, so every output entry contributes with a different weight.

    Args:
        model: a float64 `Sequential`, or a layer, which is then wrapped in a fresh
            float64 `Sequential` on x's backend (re-initialising its parameters).
        x: (N, in) float64 input on the model's backend.
        dy: optional fixed output weights, shaped like model(x).
    """
    _require_float64(x, "inputs")
    xp = array_module(x)
    if isinstance(model, Layer):
        model = Sequential([model], backend=get_backend(xp.__name__, "float64", seed))
    _require_float64(model.params, "parameters")
    x = x.copy()
    if dy is None:
        shape = model.forward(x).shape
        dy = xp.asarray(np.random.default_rng(seed).standard_normal(shape))

    def objective() -> Any:
        return xp.sum(model.forward(x) * dy)

    model.zero_grad()
    model.forward(x)
    dx = model.backward(dy)
    comparisons = [compare("input", dx, numerical_gradient(objective, x, eps))]
    for name, param, grad in model.named_parameters():
        comparisons.append(compare(name, grad, numerical_gradient(objective, param, eps)))
    return GradcheckReport(comparisons)


def check_loss(loss: Any, logits: Any, targets: Any, eps: float = 1e-6) -> GradcheckReport:
    """Checks a loss's `backward()` against central differences of its `forward`."""
    _require_float64(logits, "logits")
    logits = logits.copy()
    loss.forward(logits, targets)
    analytic = loss.backward()
    numeric = numerical_gradient(lambda: loss.forward(logits, targets), logits, eps)
    return GradcheckReport([compare("logits", analytic, numeric)])


def assert_gradients_close(report: GradcheckReport, tolerance: float = DEFAULT_TOLERANCE) -> None:
    """Raises `GradcheckError` with the whole report when any error exceeds `tolerance`."""
    if not report.passed(tolerance):
        raise GradcheckError(f"gradient check failed: worst relative error "
                             f"{report.max_error:.2e} > {tolerance:.0e}\n{report}")
