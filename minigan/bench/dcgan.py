"""DCGAN step benchmark (float32, CPU): minigan's `dcgan-paper` preset against the same networks
and step written in PyTorch, with a per-layer breakdown and the step's matrix-product share.

What it measures, per batch size B:
- the step: median ms of one `GAN.train_step(real)` (real in [-1, 1], (B, 28, 28, 1)) and
  of pytorch/examples' dcgan step (fake = G(z); D on real and on fake.detach() in two
  passes; D step; G step through the updated D on the same fake; PyTorch computes D's
  parameter gradients in that G step too, as the example does). Every timed block of either
  side is a fair one (`minigan.bench.timing.timed_block`: a pause, in which the other side's
  BLAS / OpenMP threads stop spinning, and one untimed step first); benchmarks/dcgan_step.py
  runs the rounds, the sides taking turns going first (`minigan.bench.timing.alternate`).
- products: the step's matrix products alone (`step_products`), timed at the same shapes
  on NumPy; products_ms / step_ms is the share of the step spent in BLAS.
- layers: forward and backward ms of every layer of G and D at batch B (BatchNorm in
  training mode; backward computes the parameter gradients and the input gradient).

PyTorch runs in a child process (`minigan.bench.dcgan_torch`, one JSON request and reply
a line) with as many threads as minigan's BLAS gets, so the two never compete for cores;
minigan never imports torch. Run it with `benchmarks/dcgan_step.py`.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, NamedTuple

import numpy as np

from ..backend import get_backend
from ..conv import Conv2d, ConvTranspose2d
from ..gan import GAN
from ..layers import Dense
from ..run.presets import PRESETS, build_gan
from .timing import PAUSE_S, median_ms, timed_block

IMAGE = (28, 28, 1)  # (H, W, C), channels last


def forward_backward_ms(prepare: Callable[[], Any], forward: Callable[[Any], Any],
                        backward: Callable[[Any], Any], repeats: int) -> tuple[float, float]:
    """Median ms of forward(prepare()) and of backward(its output), timed apart; prepare()
    is not timed and one untimed pair runs first."""
    forward_times, backward_times = [], []
    for index in range(repeats + 1):
        x = prepare()
        start = time.perf_counter()
        y = forward(x)
        middle = time.perf_counter()
        backward(y)
        end = time.perf_counter()
        if index:
            forward_times.append((middle - start) * 1e3)
            backward_times.append((end - middle) * 1e3)
    return statistics.median(forward_times), statistics.median(backward_times)


class Product(NamedTuple):
    """A^T? @ B^T? with A, B of the stored shapes, run `count` times per step."""

    label: str
    a: tuple[int, int]
    b: tuple[int, int]
    transpose_a: bool
    transpose_b: bool
    count: int


def _as_matrix_products(layer: Any, shape_in: tuple[int, ...], shape_out: tuple[int, ...],
                        batch: int) -> list[tuple[int, int, int]]:
    """[(rows, inner, outer)]: the layer's forward products (rows, inner) @ (inner, outer), one
    per band for a convolution (`minigan.im2col.bands`); [] for a layer without one."""
    if isinstance(layer, Dense):  # x (N, in) @ W (in, out)
        return [(batch, layer.in_features, layer.out_features)]
    if not isinstance(layer, (Conv2d, ConvTranspose2d)):
        return []
    if isinstance(layer, Conv2d):  # per band: gather (N bh bw, ki kj in) @ W_part (ki kj in, out)
        return [(batch * band.size[0] * band.size[1], band.kernel[0] * band.kernel[1] * layer.in_channels,
                 layer.out_channels) for band in layer.bands_for(shape_in[:2], shape_out[:2])]
    # ConvTranspose2d, per band: x rows (N bh bw, in) @ W_part (in, ki kj out), then scatter_add
    return [(batch * band.size[0] * band.size[1], layer.in_channels,
             band.kernel[0] * band.kernel[1] * layer.out_channels) for band in layer.bands_for(shape_out[:2], shape_in[:2])]


def step_products(gan: GAN, batch: int) -> list[Product]:
    """The matrix products of one `train_step` at `batch`, with their counts.

    For a layer whose forward product is P = A (rows, inner) @ W (inner, outer): P itself,
    dW = A^T dP and dA = dP W^T (dP: the gradient at P; for a transposed convolution the
    gathered dy, for a convolution dA is what scatter_add turns into dx), a convolution's
    once per band.
    G runs forward once and backward once, without dL/dz. D runs forward three times
    (real, fake, fake in the G step) and backward three times: twice with parameter
    gradients and no dL/dx at its first layer, once (the G step) with dL/dx only."""
    products = []
    for name, model, forwards, weight_grads, input_grads, first_input_grads in (
            ("G", gan.generator, 1, 1, 1, 0), ("D", gan.discriminator, 3, 2, 3, 1)):
        for index, layer in enumerate(model.layers):
            label = f"{name} {index} {type(layer).__name__}"
            for rows, inner, outer in _as_matrix_products(layer, model.shapes[index], model.shapes[index + 1], batch):
                products += [
                    Product(f"{label} forward", (rows, inner), (inner, outer), False, False, forwards),
                    Product(f"{label} dW", (rows, inner), (rows, outer), True, False, weight_grads),
                    Product(f"{label} dx", (rows, outer), (inner, outer), False, True,
                            first_input_grads if index == 0 else input_grads)]
    return [product for product in products if product.count]


def products_flop(products: list[Product]) -> int:
    """Floating-point operations of `products`: 2 m k n for an (m, k) @ (k, n), times its count."""
    total = 0
    for product in products:
        m, k = product.a[::-1] if product.transpose_a else product.a
        n = product.b[0] if product.transpose_b else product.b[1]
        total += product.count * 2 * m * k * n
    return total


def products_ms(products: list[Product], repeats: int) -> float:
    """Summed median ms (NumPy, float32) of `products`, each times its count. A product with
    inner size 1 (Dense(.., 1)'s dx) is the broadcast multiply minigan uses for it."""
    rng = np.random.default_rng(0)
    total = 0.0
    for product in products:
        a = rng.standard_normal(product.a, dtype=np.float32)
        b = rng.standard_normal(product.b, dtype=np.float32)
        a, b = (a.T if product.transpose_a else a), (b.T if product.transpose_b else b)
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)
        multiply = np.multiply if a.shape[1] == 1 else np.matmul
        total += product.count * median_ms(lambda: multiply(a, b, out=out), lambda: None, repeats, warmup=1)
    return total


class MiniganDCGAN:
    """The `dcgan-paper` preset's GAN (NumPy, float32, seed 0) and a real batch of size `batch`;
    with `compiled=False` its layers run their NumPy code instead of the compiled passes."""

    def __init__(self, batch: int, compiled: bool = True):
        self.backend = get_backend("numpy", "float32", seed=0)
        self.backend.compiled = self.backend.compiled and compiled
        self.gan = build_gan(PRESETS["dcgan-paper"], IMAGE, self.backend)
        self.rng = np.random.default_rng(1)
        self.real = self.backend.asarray(self.rng.uniform(-1, 1, (batch, *IMAGE)))
        self.batch = batch

    def step_ms(self, repeats: int) -> float:
        """One fair timed block (a pause, one untimed step): the median ms of `repeats` steps."""
        return statistics.median(timed_block(lambda: self.gan.train_step(self.real), repeats))

    def products_ms(self, repeats: int) -> float:
        """The summed median ms of this step's matrix products alone (`step_products`)."""
        return products_ms(step_products(self.gan, self.batch), repeats)

    def products_flop(self) -> int:
        """Floating-point operations of this step's matrix products (`step_products`)."""
        return products_flop(step_products(self.gan, self.batch))

    def layer_ms(self, repeats: int) -> list[dict[str, Any]]:
        """Forward and backward ms of every layer of G, then of D (training mode)."""
        time.sleep(PAUSE_S)
        rows = []
        for network, model in (("G", self.gan.generator), ("D", self.gan.discriminator)):
            for index, layer in enumerate(model.layers):
                shape_in, shape_out = model.shapes[index], model.shapes[index + 1]
                x = self.backend.asarray(self.rng.standard_normal((self.batch, *shape_in)))
                dy = self.backend.asarray(self.rng.standard_normal((self.batch, *shape_out)))
                forward_ms, backward_ms = forward_backward_ms(
                    lambda: x, layer.forward, lambda _: layer.backward(dy, grads="write"), repeats)
                rows.append({"network": network, "layer": f"{index} {type(layer).__name__}",
                             "shape_in": shape_in, "shape_out": shape_out,
                             "minigan_forward_ms": forward_ms, "minigan_backward_ms": backward_ms})
        return rows
