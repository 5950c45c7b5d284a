"""`Sequential`: a stack of layers with known shapes that owns one flat parameter array,
one flat gradient array and one flat buffer array.

Every layer's parameters (`W`, `b`) and gradients (`dW`, `db`) are views into the
contiguous 1-D arrays `params` and `grads`; its buffers (BatchNorm's running statistics)
are views into `buffers`. Optimizers update a whole model with a few vector operations;
saving, loading, gradient norms and a data-parallel all-reduce are one array each.
Shapes are checked once, at construction: each layer maps an input shape (without the
batch axis) to an output shape.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Sequence

import numpy as np

from .backend import Backend, get_backend
from .layers import Layer, Shape, layer_from_config


def _shape_of(value: Any, what: str) -> Shape:
    try:
        shape = tuple(int(size) for size in value)
    except TypeError:
        raise ValueError(f"{what} must be a tuple of positive sizes, got {value!r}") from None
    if not shape or any(size < 1 for size in shape):
        raise ValueError(f"{what} must be a non-empty tuple of positive sizes, got {value!r}")
    return shape


class Sequential:
    """Layers applied in order, with flat parameter, gradient and buffer arrays.

    Args:
        layers: the layers, each used by exactly one model.
        backend: where the arrays live; a fresh `get_backend()` when None.
        input_shape: one example's shape without the batch axis, e.g. (28, 28, 1);
            may be omitted when the first layer is `Dense` (then it is (in_features,)).

    Intermediate activations (e.g. a discriminator's features): `forward(x, until=l)` runs
    layers 0..l only and returns layer l's output, of shape (N, *shapes[l + 1]);
    `backward(dy, from_layer=l)` takes dy at layer l's output and runs layers l..0. A
    layer index l is an int in [-len(layers), len(layers) - 1], negative ones counting
    from the end as in Python (see `layer_index`). Layers after l are left alone: their
    caches, and their gradients even with `accumulate=False`. A layer's backward never
    changes what its forward cached, so several backward calls may follow one forward,
    e.g. one from the top and one from layer l.

    Raises:
        ValueError: a layer that cannot take its input shape, naming the layer, its
            index, the shape it got and what it expects.
    """

    def __init__(self, layers: Sequence[Layer], backend: Backend | None = None,
                 input_shape: Sequence[int] | None = None):
        if not layers or not all(isinstance(layer, Layer) for layer in layers):
            raise TypeError("Sequential needs a non-empty list of minigan layers")
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("the same layer object appears twice; create one per position")
        self.layers = list(layers)
        self.backend = backend if backend is not None else get_backend()
        self.shapes = self._infer_shapes(input_shape)  # shapes[k]: input of layer k; [-1]: output
        self.training = True
        xp, dtype = self.backend.xp, self.backend.dtype
        param_shapes = [layer.param_shapes() for layer in self.layers]
        buffer_shapes = [layer.buffer_shapes() for layer in self.layers]
        self.params = xp.zeros(_total(param_shapes), dtype=dtype)    # every parameter, back to back
        self.grads = xp.zeros(_total(param_shapes), dtype=dtype)     # dL/dparams, same layout
        self.buffers = xp.zeros(_total(buffer_shapes), dtype=dtype)  # running statistics etc.
        self._param_slices = _layout(param_shapes)
        self._buffer_slices = _layout(buffer_shapes)
        for index, layer in enumerate(self.layers):
            params = self._views(self.params, self._param_slices, index)
            grads = self._views(self.grads, self._param_slices, index)
            buffers = self._views(self.buffers, self._buffer_slices, index)
            if set(params) & set(buffers):
                raise ValueError(f"layer {index} ({layer!r}) names a parameter and a buffer alike")
            layer.attach(self.backend, params, grads, buffers)
            layer.reset_parameters()

    def _infer_shapes(self, input_shape: Sequence[int] | None) -> list[Shape]:
        if input_shape is None:
            first = self.layers[0]
            if not hasattr(first, "in_features"):
                raise ValueError(f"give Sequential an input_shape: the first layer, {first!r}, "
                                 f"does not imply one")
            input_shape = (first.in_features,)
        return chain_shapes(self.layers, input_shape)

    @staticmethod
    def _views(flat: Any, slices: dict[str, tuple[slice, Shape]], index: int) -> dict[str, Any]:
        prefix = f"{index}."
        return {name[len(prefix):]: flat[span].reshape(shape)
                for name, (span, shape) in slices.items() if name.startswith(prefix)}

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], input_shape={self.input_shape}, backend={self.backend!r})"

    def config(self) -> dict[str, Any]:
        """The input shape and layer configurations that rebuild this model (`from_config`)."""
        return {"input_shape": list(self.input_shape), "layers": [layer.config() for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict[str, Any] | list[dict[str, Any]],
                    backend: Backend | None = None) -> "Sequential":
        """Builds a freshly initialised model from `config()` (or a bare list of layer
        configurations, as minigan 0.1 saved them)."""
        if isinstance(config, list):
            config = {"input_shape": None, "layers": config}
        return cls([layer_from_config(layer) for layer in config["layers"]], backend=backend,
                   input_shape=config["input_shape"])

    @property
    def input_shape(self) -> Shape:
        """One input example's shape (without the batch axis)."""
        return self.shapes[0]

    @property
    def output_shape(self) -> Shape:
        """One output example's shape (without the batch axis)."""
        return self.shapes[-1]

    @property
    def in_features(self) -> int:
        """Width of a flat (N, F) input; ValueError for image inputs."""
        return _flat_width(self.input_shape, "input")

    @property
    def out_features(self) -> int:
        """Width of a flat (N, F) output; ValueError for image outputs."""
        return _flat_width(self.output_shape, "output")

    @property
    def num_params(self) -> int:
        """Number of scalar parameters."""
        return int(self.params.size)

    @property
    def rows_independent(self) -> bool:
        """True when every layer maps each row on its own (batches may be concatenated)."""
        return all(layer.rows_independent for layer in self.layers)

    def walk_layers(self) -> Iterator[Layer]:
        """Every layer, each followed by the layers nested inside it (`Layer.sublayers`)."""
        for layer in self.layers:
            yield layer
            yield from layer.sublayers()

    def train(self, mode: bool = True) -> "Sequential":
        """Switches every layer to training mode (or evaluation mode with False)."""
        self.training = bool(mode)
        for layer in self.layers:
            layer.training = self.training
        return self

    def eval(self) -> "Sequential":
        """Switches every layer to evaluation mode (BatchNorm uses its running statistics)."""
        return self.train(False)

    def layer_index(self, index: int) -> int:
        """`index` as a position in `layers`, in [0, len(layers)): negative indices count
        from the end as in Python; ValueError for anything but an int in range."""
        count = len(self.layers)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -count <= index < count:
            raise ValueError(f"a layer index must be an int in [-{count}, {count - 1}] (the model has "
                             f"{count} layers), got {index!r}")
        return int(index) % count

    def forward(self, x: Any, until: int | None = None) -> Any:
        """Runs every layer on `x` (N, *input_shape) and returns (N, *output_shape); with
        `until=l`, runs layers 0..l only and returns layer l's output (N, *shapes[l + 1])."""
        stop = len(self.layers) if until is None else self.layer_index(until) + 1
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"model expects input of shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(x.shape)}")
        for layer in self.layers[:stop]:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, dy: Any, param_grads: bool = True, input_grad: bool = True,
                 accumulate: bool = True, from_layer: int | None = None) -> Any:
        """Backpropagates dy = dL/doutput of the last forward; returns dL/dinput.

        With `param_grads=True` the parameter gradients are *added* into `grads`;
        `accumulate=False` overwrites them instead (the same as `zero_grad()` first,
        without its pass over them); `param_grads=False` leaves them untouched and only
        dL/dinput is computed. With `input_grad=False` the first layer skips dL/dinput
        (a whole matrix product for a Dense layer) and None is returned. With
        `from_layer=l`, dy is dL/d(layer l's output) and only layers l..0 run: the
        gradients of the layers after l are neither added to nor overwritten.
        """
        stop = len(self.layers) if from_layer is None else self.layer_index(from_layer) + 1
        grads = "skip" if not param_grads else ("add" if accumulate else "write")
        return backward_through(self.layers[:stop], dy, grads, input_grad)

    def zero_grad(self) -> None:
        """Sets every gradient to zero."""
        self.grads.fill(0)

    def named_parameters(self) -> Iterator[tuple[str, Any, Any]]:
        """Yields (name, parameter view, gradient view), names like "0.W"."""
        for name, (span, shape) in self._param_slices.items():
            yield name, self.params[span].reshape(shape), self.grads[span].reshape(shape)

    def named_buffers(self) -> Iterator[tuple[str, Any]]:
        """Yields (name, buffer view), names like "1.running_mean"."""
        for name, (span, shape) in self._buffer_slices.items():
            yield name, self.buffers[span].reshape(shape)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of every parameter and then every buffer, keyed by name ("0.W",
        "1.running_mean", ...; a layer's parameter and buffer names never coincide)."""
        state = {name: self.backend.to_numpy(param).copy() for name, param, _ in self.named_parameters()}
        state.update({name: self.backend.to_numpy(buffer).copy() for name, buffer in self.named_buffers()})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copies parameters and buffers from `state`; names and shapes must match exactly.

        Raises:
            ValueError: listing missing names, unexpected names and shape mismatches.
        """
        expected = {**self._param_slices, **self._buffer_slices}
        problems = []
        missing = [name for name in expected if name not in state]
        unexpected = [name for name in state if name not in expected]
        if missing:
            problems.append(f"missing {missing}")
        if unexpected:
            problems.append(f"unexpected {unexpected}")
        for name, (_, shape) in expected.items():
            if name in state and tuple(np.shape(state[name])) != shape:
                problems.append(f"{name} has shape {tuple(np.shape(state[name]))}, expected {shape}")
        if problems:
            raise ValueError("load_state_dict: " + "; ".join(problems))
        for name, (span, shape) in self._param_slices.items():
            self.params[span] = self.backend.asarray(self.backend.to_numpy(state[name])).reshape(-1)
        for name, (span, shape) in self._buffer_slices.items():
            self.buffers[span] = self.backend.asarray(self.backend.to_numpy(state[name])).reshape(-1)


def chain_shapes(layers: Sequence[Layer], input_shape: Sequence[int]) -> list[Shape]:
    """[input_shape, the output shape of layer 0, of layer 1, ...] for layers applied in order;
    ValueError naming the layer, its index, the shape it got and what it expects."""
    shapes = [_shape_of(input_shape, "input_shape")]
    for index, layer in enumerate(layers):
        try:
            shapes.append(_shape_of(layer.output_shape(shapes[-1]), f"output shape of {layer!r}"))
        except ValueError as error:
            raise ValueError(f"layer {index} ({layer!r}) cannot take input shape {shapes[-1]}: "
                             f"{error}") from None
    return shapes


def backward_through(layers: Sequence[Layer], dy: Any, grads: str, input_grad: bool) -> Any:
    """Backpropagates dy = dL/d(the last layer's output) through `layers`, last to first, each
    layer's parameter gradients by `grads` ("add", "write" or "skip"); returns dL/d(the first
    layer's input), or None with `input_grad=False` (the first layer then skips it)."""
    for index in range(len(layers) - 1, -1, -1):
        dy = layers[index].backward(dy, grads=grads, input_grad=input_grad or index > 0)
    return dy


def _total(shapes: list[dict[str, Shape]]) -> int:
    return sum(math.prod(shape) for layer_shapes in shapes for shape in layer_shapes.values())


def _layout(shapes: list[dict[str, Shape]]) -> dict[str, tuple[slice, Shape]]:
    """Consecutive slices of one flat array for every layer's named arrays ("index.name")."""
    layout, offset = {}, 0
    for index, layer_shapes in enumerate(shapes):
        for name, shape in layer_shapes.items():
            size = math.prod(shape)
            layout[f"{index}.{name}"] = (slice(offset, offset + size), tuple(shape))
            offset += size
    return layout


def _flat_width(shape: Shape, which: str) -> int:
    if len(shape) != 1:
        raise ValueError(f"the model's {which} has shape {shape}, not (features,); "
                         f"use .{which}_shape for image models")
    return shape[0]


@contextlib.contextmanager
def evaluating(*models: Sequential) -> Iterator[None]:
    """Puts `models` in evaluation mode for the block, then restores each one's mode."""
    modes = [model.training for model in models]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for model, mode in zip(models, modes):
            model.train(mode)
