"""Likelihoods p(x | decoder output) for the VAE: `Bernoulli`, `Gaussian`, `LearnedGaussian`,
their name registry `LIKELIHOODS`, and `LogSigma`, the layer holding a learned log sigma.

Each likelihood gives, for a data batch x (N, *shape) and the decoder's output of the
same shape, all summed over the pixels of an example (nats):
    nll(x, out)       -log p(x_i | out_i), (N,)   -- the VAE's reconstruction term
    log_prob(x, out)  log p(x_i | out_i), (N,)    -- for log_likelihood's importance weights
    grad(x, out)      d nll_i / d out_i, like out -- per example, not averaged over N
    mean(out)         E[x | out] in data space (what reconstruct and sample return)
    check(x)          ValueError when x cannot come from this likelihood
"""
from __future__ import annotations

import math
from typing import Any

from .backend import array_module
from .layers import Layer, Shape, sigmoid
from .losses import softplus

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def per_example_sum(values: Any) -> Any:
    """(N, *shape) -> (N,): the sum over everything but the batch axis."""
    return values.reshape(values.shape[0], -1).sum(axis=1)


class Likelihood:
    """Base class. Args: log_sigma, a (1,) backend array read by the Gaussian likelihoods."""

    name = ""
    learned = False  # True when log_sigma is a trained parameter

    def __init__(self, log_sigma: Any = None):
        self.log_sigma = log_sigma

    def nll(self, x: Any, out: Any) -> Any:
        """-log p(x_i | out_i) summed over pixels, (N,)."""
        raise NotImplementedError

    def grad(self, x: Any, out: Any) -> Any:
        """d nll_i / d out_i, shaped like out."""
        raise NotImplementedError

    def mean(self, out: Any) -> Any:
        """E[x | out], shaped like out."""
        raise NotImplementedError

    def log_prob(self, x: Any, out: Any) -> Any:
        """log p(x_i | out_i) summed over pixels, (N,)."""
        return -self.nll(x, out)

    def check(self, x: Any) -> None:
        """Any data fits (the default)."""


class Bernoulli(Likelihood):
    """Independent pixels x in [0, 1] with probability sigmoid(l) for decoder logits l:

        -log p(x | l) = sum_pixels [-x log s(l) - (1 - x) log(1 - s(l))]
                      = sum_pixels [softplus(l) - x l]          (stable: no log(sigmoid))
        d/dl = sigmoid(l) - x.
    Data between 0 and 1 (grey levels) is the usual continuous relaxation.
    """

    name = "bernoulli"

    def nll(self, x: Any, out: Any) -> Any:
        xp = array_module(out)
        return per_example_sum(softplus(xp, out) - x * out)  # (N,)

    def grad(self, x: Any, out: Any) -> Any:
        grad = sigmoid(array_module(out), out)  # d softplus(l) / dl = sigmoid(l)
        grad -= x                      # d (-x l) / dl = -x
        return grad

    def mean(self, out: Any) -> Any:
        return sigmoid(array_module(out), out)

    def check(self, x: Any) -> None:
        low, high = float(x.min()), float(x.max())
        if not (0 <= low and high <= 1):
            raise ValueError(f"the bernoulli likelihood needs data in [0, 1], got values in "
                             f"[{low:.6g}, {high:.6g}]")


class Gaussian(Likelihood):
    """Independent pixels x ~ N(m, sigma^2) around the decoder's means m, sigma = exp(log_sigma):

        -log p(x | m) = sum_pixels [r^2 / 2 + log_sigma + log(2 pi) / 2],  r = (x - m) / sigma
        d/dm = (m - x) / sigma^2 = -r / sigma
        d/dlog_sigma = sum_pixels (1 - r^2)   (used when log_sigma is learned).
    """

    name = "gaussian"

    def _residual(self, x: Any, out: Any) -> Any:
        """r = (x - m) / sigma, like out."""
        r = x - out
        r *= array_module(out).exp(-self.log_sigma)
        return r

    def nll(self, x: Any, out: Any) -> Any:
        r = self._residual(x, out)
        pixels = r[0].size
        # sum r^2 / 2 plus the normalising constant log_sigma + log(2 pi) / 2 of every pixel
        return 0.5 * per_example_sum(r * r) + pixels * (self.log_sigma + HALF_LOG_2PI)  # (N,)

    def grad(self, x: Any, out: Any) -> Any:
        grad = self._residual(x, out)
        grad *= -array_module(out).exp(-self.log_sigma)  # -r / sigma
        return grad

    def log_sigma_grad(self, x: Any, out: Any) -> Any:
        """d nll_i / d log_sigma = sum_pixels (1 - r^2), (N,)."""
        r = self._residual(x, out)
        return r[0].size - per_example_sum(r * r)

    def mean(self, out: Any) -> Any:
        return out


class LearnedGaussian(Gaussian):
    """`Gaussian` whose log_sigma is one trained scalar (a `LogSigma` layer's parameter)."""

    name = "gaussian_learned"
    learned = True


LIKELIHOODS: dict[str, type[Likelihood]] = {cls.name: cls for cls in (Bernoulli, Gaussian, LearnedGaussian)}


class LogSigma(Layer):
    """One trained scalar `log_sigma`, added to every input: y = x + log_sigma.
    Backward: dlog_sigma = sum dy, dx = dy. The VAE keeps its learned Gaussian's log sigma
    here, in a one-layer `Sequential`, so an ordinary optimizer updates it and checkpoints
    save it; it reads the parameter and writes its gradient directly.

    Args:
        initial: the value `reset_parameters` sets.
    """

    def __init__(self, initial: float = 0.0):
        self.initial = float(initial)

    def config(self) -> dict[str, Any]:
        return {"type": "LogSigma", "initial": self.initial}

    def param_shapes(self) -> dict[str, Shape]:
        return {"log_sigma": (1,)}

    def reset_parameters(self) -> None:
        self.log_sigma[...] = self.initial

    def forward(self, x: Any) -> Any:
        return x + self.log_sigma

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
        if grads == "add":
            self.dlog_sigma += dy.sum()
        elif grads == "write":
            self.dlog_sigma[...] = dy.sum()
        return dy if input_grad else None
