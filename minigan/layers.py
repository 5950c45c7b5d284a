"""Hand-written layers: the `Layer` protocol, `Dense`, and the activations.

Forward caches exactly what backward needs; backward *adds* into the parameter
gradients and returns the gradient with respect to the input. Layers own no memory
for parameters: `Sequential` hands each one views into its flat buffers (`attach`).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .backend import Backend

INITIALISERS = ("he", "xavier", "normal")


class Layer:
    """Base class: a differentiable map from (N, in) to (N, out) arrays.

    Subclasses with parameters list their shapes in `param_shapes`; after `attach`,
    each parameter `P` is an attribute holding a view into the model's parameter
    buffer and `dP` a view into its gradient buffer.
    """

    backend: Backend
    xp: Any

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of this layer's parameters (none by default)."""
        return {}

    def attach(self, backend: Backend, params: dict[str, Any], grads: dict[str, Any]) -> None:
        """Binds the layer to a backend and to its parameter/gradient views."""
        self.backend, self.xp = backend, backend.xp
        for name, view in params.items():
            setattr(self, name, view)
        for name, view in grads.items():
            setattr(self, "d" + name, view)

    def reset_parameters(self) -> None:
        """Initialises the parameters from the backend's generator (none by default)."""

    def forward(self, x: Any) -> Any:
        """Returns the layer's output and caches what `backward` needs."""
        raise NotImplementedError

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True,
                 accumulate: bool = True) -> Any:
        """Adds dL/dparams into the gradient views (unless `param_grads` is False)
        and returns dL/dx, given dy = dL/dy of the last `forward`. With
        `input_grad=False` a layer may skip computing dL/dx and return None. With
        `accumulate=False` the gradient views are overwritten instead of added to
        (the result of `zero_grad()` then `backward`, one pass over them cheaper)."""
        raise NotImplementedError

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (see `layer_from_config`)."""
        return {"type": type(self).__name__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class Dense(Layer):
    """Affine map y = x @ W + b with W of shape (in_features, out_features).

    Args:
        in_features, out_features: sizes of the input and output.
        init: "he" (normal, std sqrt(2 / in_features); the default), "xavier"
            (uniform in +-sqrt(6 / (in + out))) or "normal" (std 0.02, as in DCGAN).
            The bias starts at zero.
    """

    def __init__(self, in_features: int, out_features: int, init: str = "he"):
        self.in_features = _positive_int("in_features", in_features)
        self.out_features = _positive_int("out_features", out_features)
        if init not in INITIALISERS:
            raise ValueError(f"init must be one of {INITIALISERS}, got {init!r}")
        self.init = init

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features}, init={self.init!r})"

    def config(self) -> dict[str, Any]:
        return {"type": "Dense", "in_features": self.in_features,
                "out_features": self.out_features, "init": self.init}

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"W": (self.in_features, self.out_features), "b": (self.out_features,)}

    def reset_parameters(self) -> None:
        shape, rng = (self.in_features, self.out_features), self.backend.rng
        if self.init == "he":
            values = rng.standard_normal(shape) * math.sqrt(2.0 / self.in_features)
        elif self.init == "xavier":
            bound = math.sqrt(6.0 / (self.in_features + self.out_features))
            values = rng.uniform(-bound, bound, shape)
        else:
            values = rng.standard_normal(shape) * 0.02
        self.W[...] = self.backend.asarray(values)
        self.b[...] = 0

    def forward(self, x: Any) -> Any:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"{self!r} expects input of shape (N, {self.in_features}), "
                             f"got {tuple(x.shape)}")
        self.x = x
        y = x @ self.W  # (N, out)
        y += self.b
        return y

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True,
                 accumulate: bool = True) -> Any:
        if param_grads and accumulate:
            self.dW += self.x.T @ dy  # (in, out) = (in, N) @ (N, out)
            self.db += dy.sum(axis=0)
        elif param_grads:  # written by the product itself: no temporary, no extra pass
            self.xp.matmul(self.x.T, dy, out=self.dW)
            dy.sum(axis=0, out=self.db)
        if not input_grad:
            return None
        if self.out_features == 1:  # an outer product: broadcasting beats a rank-1 GEMM call
            return dy * self.W.T  # (N, 1) * (1, in)
        return dy @ self.W.T  # (N, in)


class ReLU(Layer):
    """max(x, 0). Backward: dx = dy where x > 0, else 0."""

    def forward(self, x: Any) -> Any:
        self.y = self.xp.maximum(x, 0)
        return self.y

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True,
                 accumulate: bool = True) -> Any:
        return dy * (self.y > 0)


class LeakyReLU(Layer):
    """x where x > 0, else slope * x. Backward: dx = dy * (1 if x > 0 else slope)."""

    def __init__(self, slope: float = 0.01):
        if not 0.0 <= slope < 1.0:
            raise ValueError(f"LeakyReLU slope must be in [0, 1), got {slope!r}")
        self.slope = float(slope)

    def __repr__(self) -> str:
        return f"LeakyReLU({self.slope})"

    def config(self) -> dict[str, Any]:
        return {"type": "LeakyReLU", "slope": self.slope}

    def forward(self, x: Any) -> Any:
        y = x * self.slope
        self.xp.maximum(x, y, out=y)  # max(x, slope x) is the leaky ReLU for 0 <= slope < 1
        # dy/dx as a float array, built arithmetically: a select (xp.where) on a random
        # sign pattern is several times slower on the CPU (branch mispredictions).
        self.derivative = self.xp.multiply(x > 0, 1.0 - self.slope, dtype=x.dtype)
        self.derivative += self.slope
        return y

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True,
                 accumulate: bool = True) -> Any:
        return dy * self.derivative


def sigmoid(xp: Any, x: Any) -> Any:
    """1 / (1 + exp(-x)) for any finite x, in four passes.

    For x < 0 the result has full relative precision (1 + exp(-x) ~ exp(-x) loses
    nothing), for x > 0 it rounds to 1 as it should. Below about -88 (float32) or -709
    (float64) exp(-x) overflows to inf and 1 / (1 + inf) = 0, the limit: that overflow
    is expected and not reported.
    """
    e = xp.negative(x)
    with np.errstate(over="ignore"):  # exp(-x) = inf for very negative x gives sigmoid 0
        xp.exp(e, out=e)
    e += 1
    xp.divide(1, e, out=e)
    return e


class Sigmoid(Layer):
    """Logistic function. Backward: dx = dy * y * (1 - y)."""

    def forward(self, x: Any) -> Any:
        self.y = sigmoid(self.xp, x)
        return self.y

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True,
                 accumulate: bool = True) -> Any:
        dx = 1 - self.y
        dx *= self.y
        dx *= dy
        return dx


class Tanh(Layer):
    """Hyperbolic tangent. Backward: dx = dy * (1 - y^2)."""

    def forward(self, x: Any) -> Any:
        self.y = self.xp.tanh(x)
        return self.y

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True,
                 accumulate: bool = True) -> Any:
        dx = self.y * self.y
        self.xp.subtract(1, dx, out=dx)
        dx *= dy
        return dx


LAYER_TYPES = {cls.__name__: cls for cls in (Dense, ReLU, LeakyReLU, Sigmoid, Tanh)}


def layer_from_config(config: dict[str, Any]) -> Layer:
    """Rebuilds a layer from `Layer.config()`; raises ValueError for an unknown type."""
    arguments = dict(config)
    kind = arguments.pop("type", None)
    if kind not in LAYER_TYPES:
        raise ValueError(f"unknown layer type {kind!r}; known: {sorted(LAYER_TYPES)}")
    return LAYER_TYPES[kind](**arguments)
