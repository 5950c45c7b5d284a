"""Numerical gradient checks: central differences in float64, an element-wise criterion
and a readable report.

Every hand-written backward in minigan is checked against
    df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2 h),    h = 1e-6, in float64,
and passes when *every* entry satisfies
    |analytic_i - numeric_i| <= atol + rtol * |numeric_i|,
so one wrong entry fails however small it is next to the array's largest one.

rtol covers truncation (h^2 f''' / 6: 1e-9 relative or less here). atol covers
round-off, which is absolute: f is computed to about u * S (u = 2.2e-16, S the size of
the terms f sums), so every numeric_i may be off by about u * S / h whatever its own size.
`check_model` (S = sum |model(x) * dy|) and `check_loss` (S = |loss| + max |logits|)
record this round-off scale on each comparison. The default atol (atol=None) is
DEFAULT_ATOL + ROUNDOFF_MARGIN round-off scales; an explicit atol is used as given.
On 2,000 draws of each test family (Dense/activation stacks up to width 32 and batch 16,
S up to 2e3; BCE and softmax losses) correct gradients need at most 0.84 round-off scales
beyond rtol * |numeric| and reach 0.09 of the default tolerance, while a fixed atol of
1e-8 fails up to 1 draw in 400 (errors up to 6e-8).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .backend import array_module, get_backend, to_host
from .layers import Layer
from .model import Sequential

DEFAULT_RTOL = 1e-5     # truncation error is below 1e-9 relative; a wrong gradient is far above
DEFAULT_ATOL = 1e-8     # absolute floor, e.g. numeric exactly 0 and analytic 1e-12
ROUNDOFF_MARGIN = 4.0   # round-off scales in the default atol (0.84 the most ever needed)
MACHINE_EPSILON = float(np.finfo(np.float64).eps)


class GradcheckError(AssertionError):
    """Raised by `assert_gradients_close` with the full report as its message."""


@dataclass(frozen=True)
class WorstEntry:
    """The entry of one array furthest outside its tolerance; it passes when `ratio`, i.e.
    |analytic - numeric| / (atol + rtol * |numeric|), is at most 1 (inf for a NaN)."""

    name: str
    index: tuple[int, ...]
    analytic: float
    numeric: float
    ratio: float

    @property
    def difference(self) -> float:
        """|analytic - numeric| at this entry."""
        return abs(self.analytic - self.numeric)

    @property
    def relative_error(self) -> float:
        """|analytic - numeric| / |numeric| at this entry (inf when only numeric is 0)."""
        if self.numeric == 0:
            return math.inf if self.difference else 0.0
        return self.difference / abs(self.numeric)


@dataclass(eq=False)
class GradientComparison:
    """An analytic gradient and its numerical estimate (host float64 copies), with the
    estimate's round-off scale u * S / h (0 when unknown; see the module docstring)."""

    name: str
    analytic: np.ndarray = field(repr=False)
    numeric: np.ndarray = field(repr=False)
    roundoff: float = 0.0

    def worst(self, rtol: float = DEFAULT_RTOL, atol: float | None = None) -> WorstEntry:
        """The entry maximising |analytic - numeric| / (atol + rtol * |numeric|); rtol and
        atol must be non-negative, atol=None means DEFAULT_ATOL + ROUNDOFF_MARGIN * roundoff."""
        if atol is None:
            atol = DEFAULT_ATOL + ROUNDOFF_MARGIN * self.roundoff
        if not (rtol >= 0 and atol >= 0):
            raise ValueError(f"rtol and atol must be non-negative, got rtol={rtol!r}, atol={atol!r}")
        if self.analytic.size == 0:
            return WorstEntry(self.name, (), 0.0, 0.0, 0.0)
        difference = np.abs(self.analytic - self.numeric)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(difference == 0, 0.0, difference / (atol + rtol * np.abs(self.numeric)))
        ratio = np.nan_to_num(ratio, nan=np.inf)  # a NaN anywhere is the worst entry
        index = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        return WorstEntry(self.name, tuple(int(i) for i in index), float(self.analytic[index]),
                          float(self.numeric[index]), float(ratio[index]))

    def passed(self, rtol: float = DEFAULT_RTOL, atol: float | None = None) -> bool:
        """True when every entry is within atol + rtol * |numeric| (see `worst`)."""
        return self.worst(rtol, atol).ratio <= 1


@dataclass
class GradcheckReport:
    """Comparisons for every checked array, judged at any tolerances."""

    comparisons: list[GradientComparison]

    def worst_entries(self, rtol: float = DEFAULT_RTOL, atol: float | None = None) -> list[WorstEntry]:
        """Each array's worst entry, worst first (see `GradientComparison.worst`)."""
        entries = [comparison.worst(rtol, atol) for comparison in self.comparisons]
        return sorted(entries, key=lambda entry: -entry.ratio)

    def worst(self, rtol: float = DEFAULT_RTOL, atol: float | None = None) -> WorstEntry:
        """The worst entry over all arrays."""
        return self.worst_entries(rtol, atol)[0]

    def passed(self, rtol: float = DEFAULT_RTOL, atol: float | None = None) -> bool:
        """True when every entry of every array is within its tolerance."""
        return all(entry.ratio <= 1 for entry in self.worst_entries(rtol, atol))

    def table(self, rtol: float = DEFAULT_RTOL, atol: float | None = None) -> str:
        """One line per array, worst first: where its worst entry is and how far off."""
        lines = [f"{'gradient':<16} {'worst at':<14} {'analytic':>14} {'numeric':>14} "
                 f"{'|diff|':>9} {'rel. error':>10} {'/ tol':>9}"]
        for e in self.worst_entries(rtol, atol):
            lines.append(f"{e.name:<16} {str(e.index):<14} {e.analytic:14.6e} {e.numeric:14.6e} "
                         f"{e.difference:9.2e} {e.relative_error:10.2e} {e.ratio:9.2e}")
        return "\n".join(lines)

    __str__ = table


def _require_float64(array: Any, what: str) -> None:
    if array.dtype != np.float64:
        raise TypeError(f"gradient checks need float64 {what}, got {array.dtype}: create the "
                        f"backend with get_backend(..., dtype='float64')")


def numerical_gradient(f: Callable[[], Any], x: Any, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar `f()` with respect to the array `x`, as a
    NumPy float64 array; `x` is perturbed in place, one entry at a time, and restored exactly."""
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


def compare(name: str, analytic: Any, numeric: Any, roundoff: float = 0.0) -> GradientComparison:
    """Pairs two gradient arrays of the same shape (any backend) as host float64 copies;
    `roundoff` is the numeric one's round-off scale u * S / h, when known."""
    analytic = to_host(analytic).astype(np.float64)
    numeric = to_host(numeric).astype(np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError(f"{name}: analytic shape {analytic.shape} != numeric shape {numeric.shape}")
    return GradientComparison(name, analytic, numeric, float(roundoff))


def check_model(model: Sequential | Layer, x: Any, dy: Any = None, eps: float = 1e-6,
                seed: int = 0) -> GradcheckReport:
    """Checks dL/dx and every parameter gradient of a model (or a single layer).

    The scalar checked is L = sum(model(x) * dy), with `dy` drawn from N(0, 1) (seeded)
    when not given, so every output entry contributes with a different weight.

    Args:
        model: a float64 `Sequential`, or a layer, which is then wrapped in a fresh
            float64 `Sequential` on x's backend (re-initialising its parameters).
        x: float64 input batch on the model's backend.
        dy: optional fixed output weights, shaped like model(x).
    """
    _require_float64(x, "inputs")
    xp = array_module(x)
    if isinstance(model, Layer):
        model = Sequential([model], backend=get_backend(xp.__name__, "float64", seed),
                           input_shape=x.shape[1:])
    _require_float64(model.params, "parameters")
    x = x.copy()
    model.zero_grad()
    y = model.forward(x)
    if dy is None:
        dy = xp.asarray(np.random.default_rng(seed).standard_normal(y.shape))
    roundoff = MACHINE_EPSILON * float(xp.sum(xp.abs(y * dy))) / eps  # S = sum |terms of L|
    dx = model.backward(dy)

    def objective() -> Any:
        return xp.sum(model.forward(x) * dy)

    comparisons = [compare("input", dx, numerical_gradient(objective, x, eps), roundoff)]
    for name, param, grad in model.named_parameters():
        comparisons.append(compare(name, grad, numerical_gradient(objective, param, eps), roundoff))
    return GradcheckReport(comparisons)


def check_loss(loss: Any, logits: Any, targets: Any, eps: float = 1e-6) -> GradcheckReport:
    """Checks a loss's `backward()` against central differences of its `forward`."""
    _require_float64(logits, "logits")
    logits = logits.copy()
    value = float(loss.forward(logits, targets))
    analytic = loss.backward()
    # S: each term of a mean loss is as large as the loss or the logits it combines.
    scale = abs(value) + float(np.abs(to_host(logits)).max(initial=0.0))
    numeric = numerical_gradient(lambda: loss.forward(logits, targets), logits, eps)
    return GradcheckReport([compare("logits", analytic, numeric, MACHINE_EPSILON * scale / eps)])


def assert_gradients_close(report: GradcheckReport, rtol: float = DEFAULT_RTOL,
                           atol: float | None = None) -> None:
    """Raises `GradcheckError` with the whole report when any entry is out of tolerance."""
    if not report.passed(rtol, atol):
        worst = report.worst(rtol, atol)
        raise GradcheckError(
            f"gradient check failed: {worst.name}{list(worst.index)} analytic {worst.analytic:.6e} "
            f"vs numeric {worst.numeric:.6e} is {worst.ratio:.2e} x its tolerance "
            f"(rtol={rtol:.0e}, atol={'default' if atol is None else f'{atol:.0e}'})\n"
            f"{report.table(rtol, atol)}")
