"""`Trainable`: the small protocol every model family (GAN, VAE, VAE-GAN) implements, and
the plumbing they share.

A family names its networks in `models` and their optimizers in `optimizers`; it
implements `train_step`, `sample`, `config` and `from_config`. Everything else is common
and lives here: state dicts over all networks and optimizers (keys "generator/0.W",
"g_opt/m_scaled", ...), train/eval modes, save and load. One training loop, one
checkpoint format and one command line then serve every family. Defining a subclass
registers it by class name for `minigan.checkpoint`.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .backend import Backend
from .checkpoint import FAMILIES, load_checkpoint, save_checkpoint
from .model import Sequential
from .optim import Optimizer


class Trainable:
    """Base class of the model families.

    Attributes a family sets:
        models: {name: Sequential}, e.g. {"generator": G, "discriminator": D}.
        optimizers: {name: Optimizer}, e.g. {"g_opt": ..., "d_opt": ...}.
        backend: the backend all its networks share.
        steps: completed `train_step` calls.
        batches_per_step: real batches one `train_step` consumes (a list when > 1).
        stat_names: the keys of the dict `train_step` returns, in display order.
    """

    models: dict[str, Sequential]
    optimizers: dict[str, Optimizer]
    backend: Backend
    steps: int = 0
    batches_per_step: int = 1
    stat_names: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        FAMILIES[cls.__name__] = cls

    def train_step(self, batch: Any) -> dict[str, float]:
        """One optimisation step on a real batch; returns the statistics named in `stat_names`."""
        raise NotImplementedError

    def sample(self, n: int, z: Any = None) -> Any:
        """n generated examples (N, *data_shape), from `z` or from fresh noise."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """JSON-serialisable description that `from_config` rebuilds (architectures,
        loss and optimizer settings)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any], backend: Backend) -> "Trainable":
        """A freshly initialised instance of the family described by `config()`."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> "Trainable":
        """Puts every network in training mode (evaluation mode with False)."""
        for model in self.models.values():
            model.train(mode)
        return self

    def eval(self) -> "Trainable":
        """Puts every network in evaluation mode."""
        return self.train(False)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of every network's parameters and buffers and every optimizer's
        state, keyed "<network>/<name>" and "<optimizer>/<name>"."""
        state = {}
        for prefix, part in (*self.models.items(), *self.optimizers.items()):
            state.update({f"{prefix}/{name}": value for name, value in part.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a `state_dict` (ValueError naming what is missing or misshapen)."""
        for prefix, part in (*self.models.items(), *self.optimizers.items()):
            part.load_state_dict({name[len(prefix) + 1:]: value for name, value in state.items()
                                  if name.startswith(prefix + "/")})

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        """Writes a checkpoint atomically (see `minigan.checkpoint`)."""
        save_checkpoint(path, self, extra)

    @classmethod
    def load(cls, path: str | os.PathLike, backend: Backend | None = None) -> Any:
        """Rebuilds a saved model of this family, on its recorded backend unless one is given."""
        model, _ = load_checkpoint(path, backend)
        if not isinstance(model, cls):
            raise ValueError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def data_batch(backend: Backend, x: Any, shape: tuple[int, ...], what: str = "data") -> Any:
    """x as a backend array; ValueError unless it is (N >= 1, *shape)."""
    x = backend.asarray(x)
    if tuple(x.shape[1:]) != tuple(shape) or x.shape[0] == 0:
        raise ValueError(f"a {what} batch must have shape (N, {', '.join(map(str, shape))}) with N >= 1, "
                         f"got {tuple(x.shape)}")
    return x


def check_same_backend(models: dict[str, Sequential]) -> Backend:
    """The one backend that every network shares; ValueError naming two that differ."""
    (first_name, first), *rest = models.items()
    for name, model in rest:
        if model.backend.xp is not first.backend.xp or model.backend.dtype != first.backend.dtype:
            raise ValueError(f"{first_name} ({first.backend}) and {name} ({model.backend}) must "
                             f"share one array backend and dtype")
    return first.backend


def check_optimizers(optimizers: dict[str, Optimizer], models: dict[str, Sequential]) -> None:
    """ValueError unless optimizers[k] optimises models[k] for each paired name."""
    for (opt_name, optimizer), (model_name, model) in zip(optimizers.items(), models.items()):
        if optimizer.model is not model:
            raise ValueError(f"{opt_name} must optimise the {model_name}")
