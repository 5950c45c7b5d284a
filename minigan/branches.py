"""`Branches`: several stacks of layers applied side by side to the same input, their
outputs joined along the last axis.

What it is for: a discriminator with several heads, each its own network over the same
input (a convolutional one and a multilayer perceptron, say), so that the generator has to
fool all of them at once. The GAN objectives average over every output entry, so a
discriminator with k logits is judged by the mean of k discriminators' losses (the mean
combination of Durugkar et al. 2017's multiple discriminators).

    y = concat([branch_0(x), branch_1(x), ...], axis=-1)      # (N, ..., sum of the widths)
    dL/dx = sum_b branch_b.backward(dL/dy[..., the columns of b])

The branches live inside one layer, so the model that holds it still owns one flat
parameter, gradient and buffer array: each sub-layer gets views into the slices the model
hands this layer, named "branch.layer.name" (e.g. "1.0.W", the first layer of the second
branch). Nested layers are reached through `sublayers()`, so BatchNorm inside a branch is
synchronised across ranks and switched between training and evaluation like any other.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

from .backend import Backend
from .layers import Layer, Shape, layer_from_config
from .model import backward_through, chain_shapes


class Branches(Layer):
    """Stacks of layers run on the same input; outputs concatenated along the last axis.

    Args:
        branches: a list of non-empty lists of layers (or of their `config()` dicts, as a
            checkpoint stores them). Every branch's output must agree on every axis but the
            last, e.g. (1,) and (1,) give (2,); (7, 7, 3) and (7, 7, 5) give (7, 7, 8).

    Raises:
        ValueError: no branches, an empty branch, a layer used twice, or branches whose
            outputs cannot be joined (naming the branch and the shapes).
    """

    def __init__(self, branches: Sequence[Sequence[Layer | dict[str, Any]]]):
        if isinstance(branches, (str, bytes)) or not branches:
            raise ValueError("Branches needs a non-empty list of branches, each a non-empty list of layers")
        built = []
        for index, branch in enumerate(branches):
            if isinstance(branch, (str, bytes, Layer)) or not branch:
                raise ValueError(f"Branches: branch {index} must be a non-empty list of layers, got {branch!r}")
            built.append([layer_from_config(layer) if isinstance(layer, dict) else layer for layer in branch])
        layers = [layer for branch in built for layer in branch]
        if not all(isinstance(layer, Layer) for layer in layers):
            raise ValueError("Branches: every branch entry must be a minigan layer or a layer config")
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("Branches: the same layer object appears twice; create one per position")
        self.branches = built
        self._training = True

    def sublayers(self) -> Iterator[Layer]:
        """Every layer of every branch, branch by branch, each followed by its own sublayers."""
        for branch in self.branches:
            for layer in branch:
                yield layer
                yield from layer.sublayers()

    @property
    def in_features(self) -> int:
        """The input width every branch's first layer implies (each a `Dense` of that width);
        AttributeError when they do not agree on one, so `Sequential` then asks for input_shape."""
        widths = {getattr(branch[0], "in_features", None) for branch in self.branches}
        if len(widths) != 1 or None in widths:
            raise AttributeError("the branches' first layers do not imply one input width")
        return widths.pop()

    @property
    def rows_independent(self) -> bool:  # type: ignore[override]
        return all(layer.rows_independent for branch in self.branches for layer in branch)

    @property
    def training(self) -> bool:  # type: ignore[override]
        return self._training

    @training.setter
    def training(self, mode: bool) -> None:
        self._training = bool(mode)
        for branch in self.branches:
            for layer in branch:
                layer.training = self._training

    def output_shape(self, input_shape: Shape) -> Shape:
        outputs = []
        for index, branch in enumerate(self.branches):
            try:
                outputs.append(chain_shapes(branch, input_shape)[-1])
            except ValueError as error:
                raise ValueError(f"branch {index}: {error}") from None
        leading = {shape[:-1] for shape in outputs}
        if len(leading) != 1:
            raise ValueError(f"the branches' outputs {outputs} differ on an axis other than the last, "
                             f"so they cannot be joined along it")
        return (*outputs[0][:-1], sum(shape[-1] for shape in outputs))

    def _named(self, shapes_of: str) -> dict[str, Shape]:
        return {f"{b}.{l}.{name}": shape for b, branch in enumerate(self.branches)
                for l, layer in enumerate(branch) for name, shape in getattr(layer, shapes_of)().items()}

    def param_shapes(self) -> dict[str, Shape]:
        return self._named("param_shapes")

    def buffer_shapes(self) -> dict[str, Shape]:
        return self._named("buffer_shapes")

    def attach(self, backend: Backend, params: dict[str, Any], grads: dict[str, Any],
               buffers: dict[str, Any]) -> None:
        self.backend, self.xp = backend, backend.xp
        for b, branch in enumerate(self.branches):
            for l, layer in enumerate(branch):
                prefix = f"{b}.{l}."
                layer.attach(backend, *(_unprefixed(views, prefix) for views in (params, grads, buffers)))

    def reset_parameters(self) -> None:
        for branch in self.branches:
            for layer in branch:
                layer.reset_parameters()

    def forward(self, x: Any) -> Any:
        outputs = []
        for branch in self.branches:
            h = x
            for layer in branch:
                h = layer.forward(h)
            outputs.append(h)
        self.widths = [output.shape[-1] for output in outputs]
        return self.xp.concatenate(outputs, axis=-1)  # (N, ..., sum of widths)

    def backward(self, dy: Any, grads: str = "add", input_grad: bool = True) -> Any:
        dx, start = None, 0
        for branch, width in zip(self.branches, self.widths):
            g = dy[..., start:start + width].copy()  # this branch's columns, contiguous
            start += width
            g = backward_through(branch, g, grads, input_grad)
            if input_grad:
                dx = g if dx is None else dx + g  # a new array: g may be a layer's reused buffer
        return dx

    def config(self) -> dict[str, Any]:
        return {"type": "Branches", "branches": [[layer.config() for layer in branch] for branch in self.branches]}


def _unprefixed(views: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The views whose names start with `prefix`, named without it ("1.0.W" -> "W" for "1.0.")."""
    return {name[len(prefix):]: view for name, view in views.items() if name.startswith(prefix)}
