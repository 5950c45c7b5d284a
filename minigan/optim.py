"""Optimizers: `SGD`, `Adam`, `RMSProp`, each a few in-place operations on flat buffers.

An optimizer holds a model's flat `params` and `grads` arrays and updates the whole
model at once, with PyTorch's exact update rules. State (moments, step count) lives in
buffers allocated once; `step()` allocates nothing.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .kernels import fused_update


def _check_hyper(name: str, value: float, low: float, high: float = math.inf,
                 low_open: bool = False, high_open: bool = True) -> float:
    value = float(value)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (math.isfinite(value) and above and below):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be in {left}{low}, {high}{right}, got {value!r}")
    return value


class Optimizer:
    """Base class: validates the learning rate, finds the flat buffers, saves state.

    Subclasses write the update twice: `_update` with NumPy-API in-place operations, and
    `_fused_arguments`, the arguments of the one-pass CUDA kernel `kernel_name` in
    `minigan.kernels`, used on the CuPy backend (its NumPy reference takes the same ones).

    Args:
        model: anything with flat `params` and `grads` arrays (a `Sequential`).
        lr: learning rate, > 0.

    Attributes:
        gradient_hook: None, or a callable that `step()` gives the flat `grads` before
            updating, e.g. the data-parallel average over processes (`minigan.distributed`).
    """

    state_names: tuple[str, ...] = ()
    kernel_name = ""

    def __init__(self, model: Any, lr: float):
        self.model = model
        self.params, self.grads = model.params, model.grads
        self.lr = _check_hyper("lr", lr, 0.0, low_open=True)
        self.steps = 0
        self.gradient_hook: Callable[[Any], None] | None = None
        xp = model.backend.xp
        self.fused = model.backend.name == "cupy"  # one fused kernel per step on a GPU
        self.work = xp.zeros_like(self.params)  # scratch space reused by every step
        for name in self.state_names:
            setattr(self, name, xp.zeros_like(self.params))

    def step(self) -> None:
        """Updates `params` in place from `grads` (first handed to `gradient_hook`, if any)."""
        if self.gradient_hook is not None:
            self.gradient_hook(self.grads)
        self.steps += 1
        if self.fused:
            fused_update(self.kernel_name)(*self._fused_arguments())
        else:
            self._update()

    def _update(self) -> None:
        raise NotImplementedError

    def _fused_arguments(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def _scalar(self, value: float) -> Any:
        """A scalar of the buffers' dtype (the fused kernels take their scalars as that dtype)."""
        return self.params.dtype.type(value)

    def config(self) -> dict[str, Any]:
        """Type and hyper-parameters, enough to rebuild the optimizer (`optimizer_from_config`)."""
        return {"type": type(self).__name__, "lr": self.lr, **self.hyper_parameters()}

    def hyper_parameters(self) -> dict[str, Any]:
        """The constructor's keyword arguments other than `lr`."""
        return {}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of the optimizer's state buffers plus the step count."""
        state = {name: self.model.backend.to_numpy(getattr(self, name)).copy()
                 for name in self.state_names}
        state["steps"] = np.array(self.steps, dtype=np.int64)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a `state_dict`; raises ValueError when a buffer is missing or misshapen."""
        for name in (*self.state_names, "steps"):
            if name not in state:
                raise ValueError(f"optimizer state is missing {name!r}")
        for name in self.state_names:
            if tuple(np.shape(state[name])) != tuple(self.params.shape):
                raise ValueError(f"optimizer state {name!r} has shape {np.shape(state[name])}, "
                                 f"expected {tuple(self.params.shape)}")
            getattr(self, name)[...] = self.model.backend.asarray(state[name])
        self.steps = int(state["steps"])


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (torch.optim.SGD semantics).

    buf = momentum * buf + g;  p -= lr * buf   (p -= lr * g, buf untouched, when momentum is 0).
    """

    state_names = ("momentum_buffer",)
    kernel_name = "sgd"

    def __init__(self, model: Any, lr: float, momentum: float = 0.0):
        self.momentum = _check_hyper("momentum", momentum, 0.0, 1.0)
        super().__init__(model, lr)

    def hyper_parameters(self) -> dict[str, Any]:
        return {"momentum": self.momentum}

    def _fused_arguments(self) -> tuple[Any, ...]:
        return (self.grads, self._scalar(self.lr), np.float64(self.momentum), self.params,
                self.momentum_buffer)

    def _update(self) -> None:
        direction = self.grads
        if self.momentum:
            self.momentum_buffer *= self.momentum
            self.momentum_buffer += self.grads
            direction = self.momentum_buffer
        self.work[...] = direction
        self.work *= self.lr
        self.params -= self.work


class Adam(Optimizer):
    """Adam (torch.optim.Adam semantics, no weight decay).

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
    p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),  bc_i = 1 - b_i^t.

    The state buffers hold the moments divided by (1 - b_i): m_scaled = m / (1 - b1) and
    v_scaled = v / (1 - b2), which follow m_scaled = b1 m_scaled + g and
    v_scaled = b2 v_scaled + g^2, two passes fewer than the literal form. With
    k = sqrt(bc2 / (1 - b2)) the update is the same number:
    p -= (lr (1 - b1) k / bc1) * m_scaled / (sqrt(v_scaled) + eps k).
    `moments()` gives torch's m and v; `load_state_dict` also accepts them ("m", "v").
    """

    state_names = ("m_scaled", "v_scaled")
    kernel_name = "adam"

    def __init__(self, model: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.beta1 = _check_hyper("betas[0]", betas[0], 0.0, 1.0)
        self.beta2 = _check_hyper("betas[1]", betas[1], 0.0, 1.0)
        self.eps = _check_hyper("eps", eps, 0.0)
        super().__init__(model, lr)

    def hyper_parameters(self) -> dict[str, Any]:
        return {"betas": [self.beta1, self.beta2], "eps": self.eps}

    def moments(self) -> tuple[Any, Any]:
        """torch's first and second moments (exp_avg, exp_avg_sq), as new arrays."""
        return self.m_scaled * (1 - self.beta1), self.v_scaled * (1 - self.beta2)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a `state_dict`, or torch-convention moments given as "m" and "v"."""
        if "m_scaled" not in state and "m" in state and "v" in state:
            state = {**state, "m_scaled": np.asarray(state["m"], dtype=np.float64) / (1 - self.beta1),
                     "v_scaled": np.asarray(state["v"], dtype=np.float64) / (1 - self.beta2)}
        super().load_state_dict(state)

    def _scaled_constants(self) -> tuple[float, float]:
        """eps k and lr (1 - b1) k / bc1 with k = sqrt(bc2 / (1 - b2)) (see the class docstring)."""
        k = math.sqrt((1 - self.beta2 ** self.steps) / (1 - self.beta2))
        return self.eps * k, self.lr * (1 - self.beta1) * k / (1 - self.beta1 ** self.steps)

    def _fused_arguments(self) -> tuple[Any, ...]:
        eps_scaled, step_size = self._scaled_constants()
        return (self.grads, self._scalar(self.beta1), self._scalar(self.beta2), self._scalar(eps_scaled),
                self._scalar(step_size), self.params, self.m_scaled, self.v_scaled)

    def _update(self) -> None:
        xp, g, work = self.model.backend.xp, self.grads, self.work
        self.m_scaled *= self.beta1         # m_scaled = b1 m_scaled + g
        self.m_scaled += g
        xp.multiply(g, g, out=work)         # v_scaled = b2 v_scaled + g^2
        self.v_scaled *= self.beta2
        self.v_scaled += work
        eps_scaled, step_size = self._scaled_constants()
        xp.sqrt(self.v_scaled, out=work)
        work += eps_scaled
        xp.divide(self.m_scaled, work, out=work)
        work *= step_size
        self.params -= work


class RMSProp(Optimizer):
    """RMSProp (torch.optim.RMSprop semantics, not centred, no momentum).

    v = alpha v + (1 - alpha) g^2;  p -= lr * g / (sqrt(v) + eps).
    """

    state_names = ("square_avg",)
    kernel_name = "rmsprop"

    def __init__(self, model: Any, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8):
        self.alpha = _check_hyper("alpha", alpha, 0.0, 1.0)
        self.eps = _check_hyper("eps", eps, 0.0)
        super().__init__(model, lr)

    def hyper_parameters(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "eps": self.eps}

    def _fused_arguments(self) -> tuple[Any, ...]:
        return (self.grads, self._scalar(self.lr), self._scalar(self.alpha), self._scalar(1 - self.alpha),
                self._scalar(self.eps), self.params, self.square_avg)

    def _update(self) -> None:
        xp, g, work = self.model.backend.xp, self.grads, self.work
        self.square_avg *= self.alpha
        xp.multiply(g, g, out=work)
        work *= 1 - self.alpha
        self.square_avg += work
        xp.sqrt(self.square_avg, out=work)
        work += self.eps
        xp.divide(g, work, out=work)
        work *= self.lr
        self.params -= work


OPTIMIZER_TYPES = {cls.__name__: cls for cls in (SGD, Adam, RMSProp)}


def optimizer_from_config(model: Any, config: dict[str, Any]) -> Optimizer:
    """Builds an optimizer for `model` from `Optimizer.config()`."""
    arguments = dict(config)
    kind = arguments.pop("type", None)
    if kind not in OPTIMIZER_TYPES:
        raise ValueError(f"unknown optimizer type {kind!r}; known: {sorted(OPTIMIZER_TYPES)}")
    if "betas" in arguments:
        arguments["betas"] = tuple(arguments["betas"])
    return OPTIMIZER_TYPES[kind](model, **arguments)
