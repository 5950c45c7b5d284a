"""The `Layer` protocol, the registry of layer types, `Dense`, the activations, `Flatten`
and `Reshape`.

Forward caches exactly what backward needs; backward writes the parameter gradients as
its `grads` mode says and returns the gradient with respect to the input. Layers own no
memory for parameters or buffers: `Sequential` hands each one views into its flat arrays
(`attach`). Defining a subclass registers it by class name, so checkpoints can rebuild
any layer from its `config()` with no edit anywhere else.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterator

import numpy as np

from .cpu_kernels import leaky_relu_forward, relu_backward
from .backend import Backend

INITIALISERS = ("he", "xavier", "normal")
GRAD_MODES = ("add", "write", "skip")
LAYER_TYPES: dict[str, type["Layer"]] = {}  # class name -> class, filled by Layer subclasses

Shape = tuple[int, ...]


class Layer:
    """Base class: a differentiable map from (N, *input_shape) to (N, *output_shape).

    Shapes never include the batch axis. A layer with parameters lists them in
    `param_shapes` and its saved-but-untrained state in `buffer_shapes`; after `attach`,
    each parameter `P` is an attribute holding a view into the model's parameter array,
    `dP` a view into its gradient array, and each buffer a view into its buffer array.

    `backward(dy, grads="add", input_grad=True)` takes dy = dL/dy of the last `forward`
    and returns dL/dx. `grads` says what happens to the parameter gradients:
        "add"    dP += dL/dP  (the default: accumulation over several passes)
        "write"  dP  = dL/dP  (as zero_grad() then "add", one pass cheaper)
        "skip"   untouched    (only dL/dx is wanted, e.g. G's step through D)
    With `input_grad=False` a layer may skip dL/dx (a whole product for `Dense`) and
    return None.

    `rows_independent` is True when each output row depends only on its own input row;
    only then may two batches be concatenated into one pass. `training` is switched by
    `Sequential.train()` / `.eval()`.
    """

    rows_independent = True
    training = True
    backend: Backend
    xp: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        known = LAYER_TYPES.get(cls.__name__)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"a layer type named {cls.__name__!r} is already registered "
                             f"({known.__module__}.{known.__qualname__}); choose another class name")
        LAYER_TYPES[cls.__name__] = cls

    def output_shape(self, input_shape: Shape) -> Shape:
        """The output shape for `input_shape`; ValueError saying what fits when it does not.
        Element-wise layers keep the shape (the default)."""
        return tuple(input_shape)

    def param_shapes(self) -> dict[str, Shape]:
        """Names and shapes of the trained parameters (none by default)."""
        return {}

    def buffer_shapes(self) -> dict[str, Shape]:
        """Names and shapes of the buffers: saved and synchronised, never trained (none by default)."""
        return {}

    def attach(self, backend: Backend, params: dict[str, Any], grads: dict[str, Any],
               buffers: dict[str, Any]) -> None:
        """Binds the layer to a backend and to its parameter, gradient and buffer views."""
        self.backend, self.xp = backend, backend.xp
        for name, view in params.items():
            setattr(self, name, view)
        for name, view in grads.items():
            setattr(self, "d" + name, view)
        for name, view in buffers.items():
            setattr(self, name, view)

    def reset_parameters(self) -> None:
        """Initialises parameters and buffers from the backend's generator (nothing by default)."""

    def sublayers(self) -> Iterator["Layer"]:
        """Layers nested inside this one, at any depth (a `Branches` layer's); none by default."""
        return iter(())

    def forward(self, x: Any) -> Any:
        """Returns the layer's output and caches what `backward` needs."""
        raise NotImplementedError

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
        """dL/dx from dy = dL/dy; parameter gradients as `grads` says (see the class docstring)."""
        raise NotImplementedError

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (see `layer_from_config`)."""
        return {"type": type(self).__name__}

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.config().items() if key != "type")
        return f"{type(self).__name__}({arguments})"


def layer_from_config(config: dict[str, Any]) -> Layer:
    """Rebuilds a layer from `Layer.config()`; ValueError naming an unknown type."""
    arguments = dict(config)
    kind = arguments.pop("type", None)
    if kind not in LAYER_TYPES:
        raise ValueError(f"unknown layer type {kind!r}; known: {sorted(LAYER_TYPES)}")
    return LAYER_TYPES[kind](**arguments)


def positive_number(name: str, value: Any) -> float:
    """`value` as a float when it is a positive finite number; ValueError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def positive_int(name: str, value: Any) -> int:
    """`value` when it is a positive int; ValueError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def initial_weights(backend: Backend, init: str, shape: Shape, fan_in: int, fan_out: int) -> Any:
    """Weights of `shape` drawn from the backend's generator by `init` (see `Dense`)."""
    rng = backend.rng
    if init == "he":
        values = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
    elif init == "xavier":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        values = rng.uniform(-bound, bound, shape)
    else:
        values = rng.standard_normal(shape) * 0.02
    return backend.asarray(values)


def check_init(init: str) -> str:
    """`init` when it names an initialiser; ValueError otherwise."""
    if init not in INITIALISERS:
        raise ValueError(f"init must be one of {INITIALISERS}, got {init!r}")
    return init


class Dense(Layer):
    """Affine map y = x @ W + b on (N, in_features), W of shape (in_features, out_features).

    Args:
        in_features, out_features: sizes of the input and output.
        init: "he" (normal, std sqrt(2 / in_features); the default), "xavier"
            (uniform in +-sqrt(6 / (in + out))) or "normal" (std 0.02, as in DCGAN).
            The bias starts at zero.
    """

    def __init__(self, in_features: int, out_features: int, init: str = "he"):
        self.in_features = positive_int("in_features", in_features)
        self.out_features = positive_int("out_features", out_features)
        self.init = check_init(init)

    def config(self) -> dict[str, Any]:
        return {"type": "Dense", "in_features": self.in_features,
                "out_features": self.out_features, "init": self.init}

    def output_shape(self, input_shape: Shape) -> Shape:
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(f"expects input shape ({self.in_features},) (add a Flatten before "
                             f"it for images)")
        return (self.out_features,)

    def param_shapes(self) -> dict[str, Shape]:
        return {"W": (self.in_features, self.out_features), "b": (self.out_features,)}

    def reset_parameters(self) -> None:
        self.W[...] = initial_weights(self.backend, self.init, self.W.shape, self.in_features,
                                      self.out_features)
        self.b[...] = 0

    def forward(self, x: Any) -> Any:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"{self!r} expects input of shape (N, {self.in_features}), "
                             f"got {tuple(x.shape)}")
        self.x = x
        y = x @ self.W  # (N, out)
        y += self.b
        return y

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
        if grads == "add":
            self.dW += self.x.T @ dy  # (in, out) = (in, N) @ (N, out)
            self.db += dy.sum(axis=0)
        elif grads == "write":  # written by the product itself: no temporary, no extra pass
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

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
        if self.backend.compiled and dy.flags.c_contiguous and self.y.flags.c_contiguous:
            dx = self.xp.empty_like(dy)  # one pass instead of a mask and a product
            relu_backward(dy.reshape(-1), self.y.reshape(-1), dy.dtype.type(0), dx.reshape(-1))
            return dx
        return dy * (self.y > 0)


class LeakyReLU(Layer):
    """x where x > 0, else slope * x. Backward: dx = dy * (1 if x > 0 else slope)."""

    def __init__(self, slope: float = 0.01):
        if not 0.0 <= slope < 1.0:
            raise ValueError(f"LeakyReLU slope must be in [0, 1), got {slope!r}")
        self.slope = float(slope)

    def config(self) -> dict[str, Any]:
        return {"type": "LeakyReLU", "slope": self.slope}

    def forward(self, x: Any) -> Any:
        if self.backend.compiled and x.flags.c_contiguous:  # y and dy/dx in one pass instead of five
            y, self.derivative = self.xp.empty_like(x), self.xp.empty_like(x)
            scalar = x.dtype.type
            leaky_relu_forward(x.reshape(-1), scalar(self.slope), scalar(1.0 - self.slope), scalar(0),
                                   y.reshape(-1), self.derivative.reshape(-1))
            return y
        y = x * self.slope
        self.xp.maximum(x, y, out=y)  # max(x, slope x) is the leaky ReLU for 0 <= slope < 1
        # dy/dx as a float array, built arithmetically: a select (xp.where) on a random
        # sign pattern is several times slower on the CPU (branch mispredictions).
        self.derivative = self.xp.multiply(x > 0, 1.0 - self.slope, dtype=x.dtype)
        self.derivative += self.slope
        return y

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
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

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
        dx = 1 - self.y
        dx *= self.y
        dx *= dy
        return dx


class Tanh(Layer):
    """Hyperbolic tangent. Backward: dx = dy * (1 - y^2)."""

    def forward(self, x: Any) -> Any:
        self.y = self.xp.tanh(x)
        return self.y

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
        dx = self.y * self.y
        self.xp.subtract(1, dx, out=dx)
        dx *= dy
        return dx


class Reshape(Layer):
    """Reshapes each example to `shape` (channels-last, C order). Backward reshapes back.

    Args:
        shape: the output shape without the batch axis, e.g. (7, 7, 128).
    """

    def __init__(self, shape: Shape):
        self.shape = tuple(positive_int("Reshape shape entry", size) for size in shape)
        if not self.shape:
            raise ValueError("Reshape needs a non-empty shape")

    def config(self) -> dict[str, Any]:
        return {"type": "Reshape", "shape": list(self.shape)}

    def output_shape(self, input_shape: Shape) -> Shape:
        if math.prod(input_shape) != math.prod(self.shape):
            raise ValueError(f"cannot reshape {math.prod(input_shape)} values per example "
                             f"to {self.shape} ({math.prod(self.shape)} values)")
        return self.shape

    def forward(self, x: Any) -> Any:
        self.input_shape = x.shape
        return x.reshape(x.shape[0], *self.shape)

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
        return dy.reshape(self.input_shape)


class Flatten(Layer):
    """(N, *shape) -> (N, prod(shape)) in channels-last (C) order: x.reshape(N, -1)."""

    def output_shape(self, input_shape: Shape) -> Shape:
        return (math.prod(input_shape),)

    def forward(self, x: Any) -> Any:
        self.input_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
        return dy.reshape(self.input_shape)
