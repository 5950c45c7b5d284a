"""`Sequential`: a stack of layers that owns one flat parameter and one flat gradient buffer.

Every layer's parameters (`W`, `b`) and gradients (`dW`, `db`) are views into the two
contiguous 1-D arrays `params` and `grads`. Optimizers update a whole model with a few
vector operations on them; saving, loading and gradient norms are one array each.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Iterator, Sequence

import numpy as np

from .backend import Backend, get_backend
from .layers import Layer, layer_from_config


class Sequential:
    """Layers applied in order, with flat parameter/gradient buffers.

    Args:
        layers: the layers, each used by exactly one model.
        backend: where the buffers live; a fresh `get_backend()` when None.
    """

    def __init__(self, layers: Sequence[Layer], backend: Backend | None = None):
        if not layers or not all(isinstance(layer, Layer) for layer in layers):
            raise TypeError("Sequential needs a non-empty list of minigan layers")
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("the same layer object appears twice; create one per position")
        self.layers = list(layers)
        # Layers from outside minigan may implement backward without `accumulate`.
        self._layers_overwrite = all("accumulate" in inspect.signature(layer.backward).parameters
                                     for layer in self.layers)
        self.backend = backend if backend is not None else get_backend()
        xp, dtype = self.backend.xp, self.backend.dtype
        shapes = [layer.param_shapes() for layer in self.layers]
        total = sum(math.prod(shape) for layer_shapes in shapes for shape in layer_shapes.values())
        self.params = xp.zeros(total, dtype=dtype)  # every parameter, back to back
        self.grads = xp.zeros(total, dtype=dtype)   # dL/dparams, same layout
        self._slices: dict[str, tuple[slice, tuple[int, ...]]] = {}
        offset = 0
        for index, (layer, layer_shapes) in enumerate(zip(self.layers, shapes)):
            param_views, grad_views = {}, {}
            for name, shape in layer_shapes.items():
                size = math.prod(shape)
                span = slice(offset, offset + size)
                param_views[name] = self.params[span].reshape(shape)
                grad_views[name] = self.grads[span].reshape(shape)
                self._slices[f"{index}.{name}"] = (span, shape)
                offset += size
            layer.attach(self.backend, param_views, grad_views)
            layer.reset_parameters()

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], backend={self.backend!r})"

    def config(self) -> list[dict[str, Any]]:
        """The layer configurations that rebuild this architecture (`from_config`)."""
        return [layer.config() for layer in self.layers]

    @classmethod
    def from_config(cls, config: list[dict[str, Any]], backend: Backend | None = None) -> "Sequential":
        """Builds a freshly initialised model from `config()`."""
        return cls([layer_from_config(layer) for layer in config], backend=backend)

    @property
    def in_features(self) -> int:
        """Width of the input, from the first Dense layer."""
        return next(layer.in_features for layer in self.layers if hasattr(layer, "in_features"))

    @property
    def out_features(self) -> int:
        """Width of the output, from the last Dense layer."""
        return next(layer.out_features for layer in reversed(self.layers) if hasattr(layer, "out_features"))

    @property
    def num_params(self) -> int:
        """Number of scalar parameters."""
        return int(self.params.size)

    def forward(self, x: Any) -> Any:
        """Runs every layer on `x` (N, in) and returns the (N, out) output."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True,
                 accumulate: bool = True) -> Any:
        """Backpropagates dy = dL/doutput of the last forward; returns dL/dinput.

        With `param_grads=True` the parameter gradients are *added* into `grads`;
        with False they are left untouched and only dL/dinput is computed. With
        `input_grad=False` the first layer skips dL/dinput (a whole matrix product
        for a Dense layer) and None is returned. `accumulate=False` overwrites
        `grads` instead: the same as `zero_grad()` first, without its pass over them.
        """
        if not accumulate and not self._layers_overwrite:  # a layer written for `+=` only
            self.zero_grad()
            accumulate = True
        options = {} if accumulate else {"accumulate": False}
        last = len(self.layers) - 1
        for index in range(last, -1, -1):
            dy = self.layers[index].backward(dy, param_grads=param_grads,
                                             input_grad=input_grad or index > 0, **options)
        return dy

    def zero_grad(self) -> None:
        """Sets every gradient to zero."""
        self.grads.fill(0)

    def named_parameters(self) -> Iterator[tuple[str, Any, Any]]:
        """Yields (name, parameter view, gradient view), names like "0.W"."""
        for name, (span, shape) in self._slices.items():
            yield name, self.params[span].reshape(shape), self.grads[span].reshape(shape)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of every parameter, keyed by name ("0.W", "0.b", ...)."""
        return {name: self.backend.to_numpy(param).copy() for name, param, _ in self.named_parameters()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copies parameters from `state`; names and shapes must match exactly.

        Raises:
            ValueError: listing missing names, unexpected names and shape mismatches.
        """
        problems = []
        missing = [name for name in self._slices if name not in state]
        unexpected = [name for name in state if name not in self._slices]
        if missing:
            problems.append(f"missing {missing}")
        if unexpected:
            problems.append(f"unexpected {unexpected}")
        for name, (_, shape) in self._slices.items():
            if name in state and tuple(np.shape(state[name])) != shape:
                problems.append(f"{name} has shape {tuple(np.shape(state[name]))}, expected {shape}")
        if problems:
            raise ValueError("load_state_dict: " + "; ".join(problems))
        for name, param, _ in self.named_parameters():
            param[...] = self.backend.asarray(self.backend.to_numpy(state[name]))
