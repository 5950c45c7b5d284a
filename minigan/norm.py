"""`BatchNorm`: batch normalisation over every axis but the last (channels-last), with
trained parameters gamma/beta, buffers running_mean/running_var, and separate training
(batch statistics) and evaluation (running statistics) paths.

Every per-channel batch sum goes through `reduce_sums`, the one hook a data-parallel run
needs for synchronised BatchNorm: with an all-reduce there, K processes compute the batch
statistics and input gradients of the concatenated batch. Parameter gradients stay local
sums, so the model's usual gradient all-reduce combines them like every other gradient.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from .cpu_kernels import (batchnorm_centre, batchnorm_channel_sums, batchnorm_gradient_sums,
                          batchnorm_input_gradient, batchnorm_normalise)
from .layers import Layer, Shape, positive_int

BATCHNORM_INITS = ("ones", "normal")


class BatchNorm(Layer):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta per channel (the last axis).

    Training mode normalises with the batch's mean and biased variance and updates
    running = (1 - momentum) * running + momentum * batch_stat (unbiased variance), as
    torch does; evaluation mode normalises with the running statistics.

    Args:
        num_features: channels C; inputs are (N, C) or (N, ..., C), e.g. (N, H, W, C).
        momentum: weight of the batch statistics in the running ones, in [0, 1].
        eps: added to the variance, > 0.
        init: gamma starts at "ones" or "normal" (N(1, 0.02), as DCGAN); beta at zero.

    Attributes:
        reduce_sums: None (identity) or a callable taking and returning a (k, C) array
            of stacked per-channel batch sums, e.g. an all-reduce over processes.
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5,
                 init: str = "ones"):
        self.num_features = positive_int("num_features", num_features)
        self.momentum = _real("momentum", momentum)
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        self.eps = _real("eps", eps)
        if not 0.0 < self.eps < math.inf:
            raise ValueError(f"eps must be a positive finite number, got {eps!r}")
        if init not in BATCHNORM_INITS:
            raise ValueError(f"init must be one of {BATCHNORM_INITS}, got {init!r}")
        self.init = init
        self.reduce_sums: Callable[[Any], Any] | None = None

    def config(self) -> dict[str, Any]:
        return {"type": "BatchNorm", "num_features": self.num_features,
                "momentum": self.momentum, "eps": self.eps, "init": self.init}

    @property
    def rows_independent(self) -> bool:
        """False in training mode: batch statistics couple the rows."""
        return not self.training

    def output_shape(self, input_shape: Shape) -> Shape:
        if input_shape[-1] != self.num_features:
            raise ValueError(f"expects channels last, i.e. input shape (..., {self.num_features}), "
                             f"got {tuple(input_shape)}")
        return tuple(input_shape)

    def param_shapes(self) -> dict[str, Shape]:
        return {"gamma": (self.num_features,), "beta": (self.num_features,)}

    def buffer_shapes(self) -> dict[str, Shape]:
        return {"running_mean": (self.num_features,), "running_var": (self.num_features,)}

    def reset_parameters(self) -> None:
        if self.init == "normal":
            draw = self.backend.rng.standard_normal(self.gamma.shape)  # float64, as DCGAN: N(1, 0.02)
            self.gamma[...] = self.backend.asarray(1.0 + 0.02 * draw)
        else:
            self.gamma[...] = 1
        self.beta[...] = 0
        self.running_mean[...] = 0
        self.running_var[...] = 1

    def forward(self, x: Any) -> Any:
        if x.ndim < 2 or x.shape[-1] != self.num_features:
            raise ValueError(f"{self!r} expects input of shape (N, ..., {self.num_features}), "
                             f"got {tuple(x.shape)}")
        x2 = x.reshape(-1, self.num_features)  # (M, C), M = N * H * W: a view when contiguous
        y = self._forward_train(x2) if self.training else self._forward_eval(x2)
        return y.reshape(x.shape)

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
        dy2 = dy.reshape(-1, self.num_features)  # (M, C)
        dx = self._backward_train(dy2, grads, input_grad) if self.training else \
            self._backward_eval(dy2, grads, input_grad)
        return None if dx is None else dx.reshape(dy.shape)

    def _reduce(self, sums: Any) -> Any:
        """(k, C) local sums -> global sums (the data-parallel hook; identity by default)."""
        return sums if self.reduce_sums is None else self.reduce_sums(sums)

    def _forward_train(self, x2: Any) -> Any:
        """Normalises with the batch statistics and updates the running ones."""
        xp, compiled = self.xp, self._compiled
        sums = xp.empty((2, self.num_features), dtype=x2.dtype)  # rows: count, sum(x)
        sums[0] = x2.shape[0]
        if compiled:
            batchnorm_channel_sums(x2, sums[1])
        else:
            x2.sum(axis=0, out=sums[1])
        sums = self._reduce(sums)
        count = x2.shape[0] if self.reduce_sums is None else float(sums[0, 0])  # global count
        if count <= 1:
            raise ValueError(f"BatchNorm in training mode needs more than 1 value per channel "
                             f"(N * H * W over the batch), got {count:g}")
        mean = sums[1] / count  # (C,)
        if compiled:  # x_hat and its squares' sums in one pass
            x_hat, squares = xp.empty_like(x2), xp.empty(self.num_features, dtype=x2.dtype)
            batchnorm_centre(x2, mean, x_hat, squares)
        else:
            x_hat = x2 - mean  # (M, C); centred first: two-pass variance, no E[x^2] - E[x]^2
            squares = xp.einsum("ij,ij->j", x_hat, x_hat)  # (C,)
        squares = self._reduce(squares.reshape(1, -1))[0]
        self.inv_std = 1 / xp.sqrt(squares / count + self.eps)  # (C,), biased variance
        momentum = self.momentum
        self.running_mean *= 1 - momentum
        self.running_mean += momentum * mean
        self.running_var *= 1 - momentum
        self.running_var += (momentum / (count - 1)) * squares  # unbiased variance
        self.x_hat, self.count = x_hat, count
        if compiled:  # x_hat scaled in place and y in one pass
            y = xp.empty_like(x_hat)
            batchnorm_normalise(x_hat, self.inv_std, self.gamma, self.beta, y)
            return y
        x_hat *= self.inv_std
        y = x_hat * self.gamma  # (M, C)
        y += self.beta
        return y

    def _backward_train(self, dy2: Any, grads: str, input_grad: bool) -> Any:
        """Closed-form backward through the batch statistics."""
        if grads == "skip" and not input_grad:
            return None
        xp, compiled = self.xp, self._compiled
        sums = xp.empty((2, self.num_features), dtype=dy2.dtype)  # rows: sum(dy), sum(dy * x_hat)
        if compiled:
            batchnorm_gradient_sums(dy2, self.x_hat, sums)
        else:
            dy2.sum(axis=0, out=sums[0])
            sums[1] = xp.einsum("ij,ij->j", dy2, self.x_hat)
        self._write_param_grads(sums[1], sums[0], grads)  # local sums, before any reduction
        if not input_grad:
            return None
        sums = self._reduce(sums)
        # x_hat = (x - mean) * inv_std with mean and var over the batch: differentiating them
        # too gives dx = gamma * inv_std * (dy - mean(dy) - x_hat * mean(dy * x_hat)).
        slope, shift, scale = sums[1] / -self.count, sums[0] / self.count, self.gamma * self.inv_std  # (C,)
        if compiled:
            dx = xp.empty_like(dy2)
            batchnorm_input_gradient(self.x_hat, dy2, slope, shift, scale, dx)
            return dx
        dx = self.x_hat * slope  # (M, C)
        dx += dy2
        dx -= shift
        dx *= scale
        return dx

    @property
    def _compiled(self) -> bool:
        """Whether training mode takes the compiled passes (`minigan.cpu_kernels`): the same
        bits as the NumPy code, whose sums over rows go row by row for more than one channel."""
        return self.backend.compiled and self.num_features > 1

    def _forward_eval(self, x2: Any) -> Any:
        """Normalises with the running statistics: one per-channel affine map."""
        self.x = x2  # (M, C), kept by reference as Dense keeps its input
        self.inv_std = 1 / self.xp.sqrt(self.running_var + self.eps)  # (C,)
        scale = self.gamma * self.inv_std
        y = x2 * scale  # (M, C)
        y += self.beta - self.running_mean * scale
        return y

    def _backward_eval(self, dy2: Any, grads: str, input_grad: bool) -> Any:
        """Backward of the affine map: dx = dy * gamma * inv_std."""
        if grads != "skip":
            x_hat = self.x - self.running_mean  # (M, C), x_hat recomputed only when needed
            x_hat *= self.inv_std
            self._write_param_grads(self.xp.einsum("ij,ij->j", dy2, x_hat), dy2.sum(axis=0), grads)
        return dy2 * (self.gamma * self.inv_std) if input_grad else None

    def _write_param_grads(self, dgamma: Any, dbeta: Any, grads: str) -> None:
        """dgamma = sum(dy * x_hat), dbeta = sum(dy), added or written as `grads` says."""
        if grads == "add":
            self.dgamma += dgamma
            self.dbeta += dbeta
        elif grads == "write":
            self.dgamma[...] = dgamma
            self.dbeta[...] = dbeta


def _real(name: str, value: Any) -> float:
    """`value` as a float; ValueError naming `name` when it is not a real number."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
